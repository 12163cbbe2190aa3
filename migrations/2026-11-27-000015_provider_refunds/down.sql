DROP TABLE provider_refunds;
