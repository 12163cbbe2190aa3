-- Refund webhooks find their provider refund by the provider's refund id, or by the payment when
-- the event carries none: both lookups run once per webhook and must not scan the table.
CREATE INDEX provider_refunds_by_refund_id ON provider_refunds (provider, provider_refund_id)
    WHERE provider_refund_id IS NOT NULL;
CREATE INDEX provider_refunds_by_payment ON provider_refunds (provider, provider_transaction_id);
