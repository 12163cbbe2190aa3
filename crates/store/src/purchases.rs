//! Meter credit purchases ([`PurchaseRepo`]): one row per completed ENERGY_TOPUP order to a meter
//! wallet (`meter_purchases.order_id` is unique), linked to the TOP_UP carrying its token.
//!
//! Every status change is a compare-and-set on the status (and on the interaction it waits for)
//! and is audited in its transaction. A refund locks the purchase row while the ledger posts the
//! reversing order, so a re-delivery cannot slip in between. Delivery sells the energy: the
//! purchase's money moves from the meter's wallet to the grid organization's (`ENERGY_SALE`) in
//! the transaction that marks it DELIVERED, after which its order can no longer be refunded.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::PgExpressionMethods;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Nullable, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use grids::events::{EventKind, LiveEvent, Operation};
use grids::vocab::MeterType;
use kernel::{
    Currency, DomainError, GridId, MeterId, MinorUnits, OrderId, OrganizationId, PageRequest,
    TenantScope, WalletId,
};
use meters::{InteractionId, InteractionStatus};
use orgs::AuditDraft;
use payments::Money;
use payments::purchase::{
    Actor, CompletedTopUp, FinishedDelivery, Opening, PricingFacts, Purchase, PurchaseFilter,
    PurchaseId, PurchaseRepo, PurchaseStatus, TariffSource,
};

use crate::audit::record;
use crate::postings::{EnergySale, post_energy_sale};
use crate::schema::meter_purchases as mp;
use crate::{Db, Result, StoreError};

fn corrupt(what: &str, v: &str) -> StoreError {
    StoreError::Domain(DomainError::Internal(format!(
        "unknown {what} {v:?} in the database"
    )))
}

fn audit(by: Actor, action: &'static str, details: serde_json::Value) -> AuditDraft {
    AuditDraft {
        actor_account_id: by.account,
        actor_api_key_id: by.api_key,
        action,
        details,
    }
}

#[derive(Queryable, QueryableByName, Selectable)]
#[diesel(table_name = mp)]
struct Row {
    id: i64,
    organization_id: i64,
    order_id: i64,
    meter_id: i64,
    grid_id: Option<i64>,
    amount_minor: i64,
    currency: String,
    energy_wh: i64,
    tariff_minor_per_kwh: Option<i64>,
    tariff_source: Option<String>,
    status: String,
    failure_reason: Option<String>,
    interaction_id: Option<i64>,
    attempts: i32,
    payer_wallet_id: i64,
    meter_wallet_id: i64,
    refund_order_id: Option<i64>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<Row> for Purchase {
    type Error = StoreError;
    fn try_from(r: Row) -> Result<Self> {
        Ok(Purchase {
            id: PurchaseId(r.id),
            organization_id: OrganizationId(r.organization_id),
            order_id: OrderId(r.order_id),
            meter_id: MeterId(r.meter_id),
            grid_id: r.grid_id.map(GridId),
            amount_minor: MinorUnits(r.amount_minor),
            currency: Currency::parse(&r.currency).map_err(|_| corrupt("currency", &r.currency))?,
            energy_wh: r.energy_wh,
            tariff_minor_per_kwh: r.tariff_minor_per_kwh,
            tariff_source: r
                .tariff_source
                .as_deref()
                .map(|s| TariffSource::parse(s).ok_or_else(|| corrupt("tariff source", s)))
                .transpose()?,
            status: PurchaseStatus::parse(&r.status)
                .ok_or_else(|| corrupt("purchase status", &r.status))?,
            failure_reason: r.failure_reason,
            interaction_id: r.interaction_id.map(InteractionId),
            attempts: r.attempts,
            payer_wallet_id: WalletId(r.payer_wallet_id),
            meter_wallet_id: WalletId(r.meter_wallet_id),
            refund_order_id: r.refund_order_id.map(OrderId),
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

#[derive(QueryableByName)]
struct TopUpRow {
    #[diesel(sql_type = BigInt)]
    order_id: i64,
    #[diesel(sql_type = BigInt)]
    meter_id: i64,
    #[diesel(sql_type = BigInt)]
    amount_minor: i64,
    #[diesel(sql_type = Text)]
    order_currency: String,
    #[diesel(sql_type = Nullable<Text>)]
    grid_currency: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    meter_tariff: Option<i64>,
    #[diesel(sql_type = Text)]
    meter_type: String,
    #[diesel(sql_type = Nullable<BigInt>)]
    hps_tariff: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    fs_tariff: Option<i64>,
}

#[derive(QueryableByName)]
struct FinishedRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    interaction_id: i64,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Nullable<Text>)]
    reason: Option<String>,
}

#[derive(QueryableByName)]
struct DeliveredRow {
    #[diesel(sql_type = BigInt)]
    organization_id: i64,
    #[diesel(sql_type = BigInt)]
    order_id: i64,
    #[diesel(sql_type = BigInt)]
    meter_wallet_id: i64,
    #[diesel(sql_type = BigInt)]
    amount_minor: i64,
    #[diesel(sql_type = Text)]
    currency: String,
    /// The organization running the purchase's grid.
    #[diesel(sql_type = Nullable<BigInt>)]
    seller: Option<i64>,
}

#[derive(QueryableByName)]
struct RefundedRow {
    #[diesel(sql_type = Bool)]
    refunded: bool,
}

#[derive(QueryableByName)]
struct IdOrg {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    organization_id: i64,
}

/// Statuses after which an interaction will not change.
fn terminal_interaction_statuses() -> Vec<&'static str> {
    InteractionStatus::ALL
        .into_iter()
        .filter(|s| s.is_terminal())
        .map(InteractionStatus::as_str)
        .collect()
}

/// How far back the worker looks for completed top-ups without a purchase (the partial index
/// `orders_completed_top_ups` keeps this cheap).
const LOOKBACK_DAYS: i64 = 30;

/// A purchase was opened or changed: its audit event and its live event, in the changing
/// transaction.
async fn changed(
    c: &mut AsyncPgConnection,
    organization: i64,
    id: i64,
    operation: Operation,
    audit: AuditDraft,
) -> Result<()> {
    record(c, organization, "meter_purchase", Some(id), &audit).await?;
    publish(c, id, operation).await
}

/// Tells the purchase's grid room (`meter_purchase`) what it is now, inside the changing
/// transaction, so a dashboard sees a payment become energy (or fail) without polling.
async fn publish(c: &mut AsyncPgConnection, id: i64, operation: Operation) -> Result<()> {
    let p = load(c, id).await?;
    let Some(grid_id) = p.grid_id else {
        return Ok(());
    };
    let event = LiveEvent {
        grid_id,
        kind: EventKind::MeterPurchase,
        operation,
        data: serde_json::json!({
            "id": p.id,
            "order_id": p.order_id,
            "meter_id": p.meter_id,
            "status": p.status,
            "energy_wh": p.energy_wh,
            "amount_minor": p.amount_minor,
            "currency": p.currency,
            "interaction_id": p.interaction_id,
            "failure_reason": p.failure_reason,
            "updated_at": p.updated_at,
        }),
    };
    crate::events::publish(c, &event).await
}

async fn load(c: &mut AsyncPgConnection, id: i64) -> Result<Purchase> {
    mp::table
        .find(id)
        .select(Row::as_select())
        .first(c)
        .await?
        .try_into()
}

impl Db {
    /// A purchase by id, unscoped (the worker and the routes' follow-up reads).
    async fn purchase(&self, scope: TenantScope, id: PurchaseId) -> Result<Option<Purchase>> {
        let mut conn = self.conn().await?;
        let mut q = mp::table
            .filter(mp::id.eq(id.get()))
            .select(Row::as_select())
            .into_boxed();
        if let Some(org) = scope.organization() {
            q = q.filter(mp::organization_id.eq(org.get()));
        }
        q.first(&mut conn)
            .await
            .optional()?
            .map(Purchase::try_from)
            .transpose()
    }
}

#[async_trait]
impl PurchaseRepo for Db {
    async fn completed_top_ups_without_purchase(
        &self,
        limit: i64,
    ) -> std::result::Result<Vec<CompletedTopUp>, DomainError> {
        let mut conn = self.conn().await?;
        let rows: Vec<TopUpRow> = diesel::sql_query(
            "SELECT o.id AS order_id, w.meter_id AS meter_id, o.amount_minor,
                    o.currency::text AS order_currency, g.currency::text AS grid_currency,
                    m.tariff_minor_per_kwh AS meter_tariff, m.meter_type,
                    g.hps_tariff_minor_per_kwh AS hps_tariff, g.fs_tariff_minor_per_kwh AS fs_tariff
               FROM orders o
               JOIN wallets w ON w.id = o.receiver_wallet_id AND w.owner_type = 'METER'
               JOIN meters m ON m.id = w.meter_id
               LEFT JOIN grids g ON g.id = m.grid_id AND g.deleted_at IS NULL
              WHERE o.status = 'COMPLETED' AND o.order_type = 'ENERGY_TOPUP'
                AND o.completed_at >= now() - make_interval(days => $2::int)
                AND NOT EXISTS (SELECT 1 FROM meter_purchases p WHERE p.order_id = o.id)
                -- Refunded before it was served: no energy for money given back.
                AND NOT EXISTS (SELECT 1 FROM orders r WHERE r.reverses_order_id = o.id
                                  AND r.status IN ('PENDING', 'COMPLETED'))
              ORDER BY o.completed_at, o.id
              LIMIT $1",
        )
        .bind::<BigInt, _>(limit)
        .bind::<diesel::sql_types::Integer, _>(LOOKBACK_DAYS as i32)
        .load(&mut conn)
        .await
        .map_err(StoreError::from)?;
        rows.into_iter()
            .map(|r| {
                let currency = |s: &str| Currency::parse(s).map_err(|_| corrupt("currency", s));
                let meter_type = MeterType::parse(&r.meter_type)
                    .ok_or_else(|| corrupt("meter type", &r.meter_type))?;
                let pricing = match (r.hps_tariff, r.fs_tariff) {
                    (Some(hps), Some(fs)) => Some(PricingFacts {
                        meter_tariff_minor_per_kwh: r.meter_tariff,
                        meter_type,
                        grid_hps_tariff_minor_per_kwh: hps,
                        grid_fs_tariff_minor_per_kwh: fs,
                    }),
                    _ => None,
                };
                Ok(CompletedTopUp {
                    order_id: OrderId(r.order_id),
                    meter_id: MeterId(r.meter_id),
                    amount_minor: r.amount_minor,
                    order_currency: currency(&r.order_currency)?,
                    grid_currency: r.grid_currency.as_deref().map(currency).transpose()?,
                    pricing,
                })
            })
            .collect::<Result<Vec<_>>>()
            .map_err(DomainError::from)
    }

    async fn open(
        &self,
        order: OrderId,
        opening: Opening,
    ) -> std::result::Result<Option<Purchase>, DomainError> {
        let (energy, tariff, source, status, reason) = match &opening {
            Opening::Priced(p) => (
                p.energy_wh,
                Some(p.tariff.minor_per_kwh),
                Some(p.tariff.source.as_str()),
                PurchaseStatus::Pending,
                None,
            ),
            Opening::Unpriceable(why) => (0, None, None, PurchaseStatus::Failed, Some(why.clone())),
        };
        let mut conn = self.conn().await?;
        let opened = conn
            .transaction(async |c| {
                // The order's row lock orders this with a refund of the order (which holds it
                // while it checks for a purchase): without it, the insert's "not reversed" check
                // reads a snapshot from before a refund that commits meanwhile, and energy would
                // go out for money given back.
                diesel::sql_query("SELECT 1 FROM orders WHERE id = $1 FOR UPDATE")
                    .bind::<BigInt, _>(order.get())
                    .execute(c)
                    .await?;
                let row: Option<IdOrg> = diesel::sql_query(
                    "INSERT INTO meter_purchases (organization_id, order_id, meter_id, grid_id,
                            amount_minor, currency, energy_wh, tariff_minor_per_kwh, tariff_source,
                            status, failure_reason, claimed_at, payer_wallet_id, meter_wallet_id)
                     SELECT o.organization_id, o.id, w.meter_id, m.grid_id, o.amount_minor,
                            o.currency, $2, $3, $4, $5, $6,
                            CASE WHEN $5 = 'PENDING' THEN now() END,
                            o.sender_wallet_id, o.receiver_wallet_id
                       FROM orders o
                       JOIN wallets w ON w.id = o.receiver_wallet_id AND w.owner_type = 'METER'
                       JOIN meters m ON m.id = w.meter_id
                      WHERE o.id = $1 AND o.status = 'COMPLETED' AND o.order_type = 'ENERGY_TOPUP'
                        AND NOT EXISTS (SELECT 1 FROM orders r WHERE r.reverses_order_id = o.id
                                          AND r.status IN ('PENDING', 'COMPLETED'))
                     ON CONFLICT (order_id) DO NOTHING
                     RETURNING id, organization_id",
                )
                .bind::<BigInt, _>(order.get())
                .bind::<BigInt, _>(energy)
                .bind::<Nullable<BigInt>, _>(tariff)
                .bind::<Nullable<Text>, _>(source)
                .bind::<Text, _>(status.as_str())
                .bind::<Nullable<Text>, _>(&reason)
                .get_result(c)
                .await
                .optional()?;
                let Some(row) = row else {
                    return Ok(None);
                };
                let action = match status {
                    PurchaseStatus::Failed => "purchase.failed",
                    _ => "purchase.opened",
                };
                changed(
                    c,
                    row.organization_id,
                    row.id,
                    Operation::Create,
                    audit(
                        Actor::default(),
                        action,
                        serde_json::json!({"order_id": order, "energy_wh": energy,
                            "tariff_minor_per_kwh": tariff, "tariff_source": source,
                            "reason": reason}),
                    ),
                )
                .await?;
                load(c, row.id).await.map(Some)
            })
            .await?;
        Ok(opened)
    }

    async fn attach(
        &self,
        id: PurchaseId,
        interaction: InteractionId,
    ) -> std::result::Result<(), DomainError> {
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            let org: Option<i64> = diesel::update(
                mp::table
                    .filter(mp::id.eq(id.get()))
                    .filter(mp::status.eq(PurchaseStatus::Pending.as_str()))
                    .filter(mp::interaction_id.is_null()),
            )
            .set((
                mp::interaction_id.eq(interaction.get()),
                mp::claimed_at.eq(None::<DateTime<Utc>>),
                mp::attempts.eq(mp::attempts + 1),
                mp::updated_at.eq(Utc::now()),
            ))
            .returning(mp::organization_id)
            .get_result(c)
            .await
            .optional()?;
            let Some(org) = org else {
                return Err(StoreError::Domain(DomainError::Conflict(format!(
                    "purchase {id} is no longer waiting for its TOP_UP (interaction {interaction} was created)"
                ))));
            };
            changed(c, org, id.get(), Operation::Update, audit(Actor::default(),
                    "purchase.top_up_created",
                    serde_json::json!({"interaction_id": interaction.get()})))
.await
        })
        .await?;
        Ok(())
    }

    async fn fail(
        &self,
        id: PurchaseId,
        interaction: Option<InteractionId>,
        reason: &str,
    ) -> std::result::Result<bool, DomainError> {
        let mut conn = self.conn().await?;
        let moved = conn
            .transaction(async |c| {
                let org: Option<i64> = mp::table
                    .filter(mp::id.eq(id.get()))
                    .filter(mp::status.eq(PurchaseStatus::Pending.as_str()))
                    .filter(mp::interaction_id.is_not_distinct_from(interaction.map(|i| i.get())))
                    .select(mp::organization_id)
                    .for_update()
                    .first(c)
                    .await
                    .optional()?;
                let Some(org) = org else {
                    return Ok(false);
                };
                diesel::update(mp::table.find(id.get()))
                    .set((
                        mp::status.eq(PurchaseStatus::Failed.as_str()),
                        mp::failure_reason.eq(reason),
                        mp::claimed_at.eq(None::<DateTime<Utc>>),
                        mp::updated_at.eq(Utc::now()),
                    ))
                    .execute(c)
                    .await?;
                changed(
                    c,
                    org,
                    id.get(),
                    Operation::Update,
                    audit(
                        Actor::default(),
                        "purchase.failed",
                        serde_json::json!({"interaction_id": interaction, "reason": reason}),
                    ),
                )
                .await?;
                Ok::<_, StoreError>(true)
            })
            .await?;
        Ok(moved)
    }

    async fn deliver(
        &self,
        id: PurchaseId,
        interaction: InteractionId,
    ) -> std::result::Result<bool, DomainError> {
        let mut conn = self.conn().await?;
        let moved = conn
            .transaction(async |c| {
                let row: Option<DeliveredRow> = diesel::sql_query(
                    "UPDATE meter_purchases p
                        SET status = 'DELIVERED', failure_reason = NULL, updated_at = now()
                      WHERE p.id = $1 AND p.status = 'PENDING' AND p.interaction_id = $2
                  RETURNING p.organization_id, p.order_id, p.meter_wallet_id, p.amount_minor,
                            p.currency::text AS currency,
                            (SELECT g.organization_id FROM grids g WHERE g.id = p.grid_id) AS seller",
                )
                .bind::<BigInt, _>(id.get())
                .bind::<BigInt, _>(interaction.get())
                .get_result(c)
                .await
                .optional()?;
                let Some(row) = row else {
                    return Ok(false);
                };
                // The order's row lock orders this with a refund of the order through /orders,
                // which then finds the purchase delivered and refuses.
                let reversed: RefundedRow = diesel::sql_query(
                    "SELECT EXISTS (SELECT 1 FROM orders r WHERE r.reverses_order_id = o.id
                                      AND r.status IN ('PENDING', 'COMPLETED')) AS refunded
                     FROM orders o WHERE o.id = $1 FOR UPDATE OF o",
                )
                .bind::<BigInt, _>(row.order_id)
                .get_result(c)
                .await?;
                let sale = if reversed.refunded {
                    // Only a refund racing a re-delivery gets here: the meter has the energy but
                    // the payer has the money back. Nothing to sell; an operator decides.
                    tracing::warn!(
                        purchase = id.get(),
                        order = row.order_id,
                        "energy was delivered for a refunded top-up; no sale was posted"
                    );
                    metrics::counter!("tiamat_purchases_delivered_after_refund_total")
                        .increment(1);
                    None
                } else {
                    let amount = Money::new(
                        row.amount_minor,
                        Currency::parse(row.currency.trim())
                            .map_err(|_| corrupt("currency", &row.currency))?,
                    );
                    let sale = EnergySale {
                        purchase_id: id.get(),
                        order_id: row.order_id,
                        seller: row.seller.unwrap_or(row.organization_id),
                        meter_wallet: row.meter_wallet_id,
                        amount,
                    };
                    Some(post_energy_sale(c, &sale, Actor::default()).await?)
                };
                changed(c, row.organization_id, id.get(), Operation::Update, audit(Actor::default(),
                        "purchase.delivered",
                        serde_json::json!({"interaction_id": interaction.get(),
                            "ledger_transaction_id": sale.map(|s| s.transaction_id)})))
.await?;
                Ok::<_, StoreError>(true)
            })
            .await?;
        Ok(moved)
    }

    async fn finished_deliveries(
        &self,
        limit: i64,
    ) -> std::result::Result<Vec<FinishedDelivery>, DomainError> {
        let mut conn = self.conn().await?;
        let rows: Vec<FinishedRow> = diesel::sql_query(
            "SELECT p.id, p.interaction_id, i.status, i.history->0->>'reason' AS reason
               FROM meter_purchases p
               JOIN meter_interactions i ON i.id = p.interaction_id
              WHERE p.status = 'PENDING' AND i.status = ANY($1)
              ORDER BY p.id LIMIT $2",
        )
        .bind::<diesel::sql_types::Array<Text>, _>(terminal_interaction_statuses())
        .bind::<BigInt, _>(limit)
        .load(&mut conn)
        .await
        .map_err(StoreError::from)?;
        rows.into_iter()
            .map(|r| {
                Ok(FinishedDelivery {
                    purchase: PurchaseId(r.id),
                    interaction: InteractionId(r.interaction_id),
                    status: crate::interactions::parse_status(&r.status)?,
                    reason: r.reason,
                })
            })
            .collect::<Result<Vec<_>>>()
            .map_err(DomainError::from)
    }

    async fn fail_abandoned(
        &self,
        before: DateTime<Utc>,
        reason: &str,
    ) -> std::result::Result<u64, DomainError> {
        let mut conn = self.conn().await?;
        let n = conn
            .transaction(async |c| {
                let rows: Vec<(i64, i64)> = diesel::update(
                    mp::table
                        .filter(mp::status.eq(PurchaseStatus::Pending.as_str()))
                        .filter(mp::interaction_id.is_null())
                        .filter(mp::claimed_at.lt(before)),
                )
                .set((
                    mp::status.eq(PurchaseStatus::Failed.as_str()),
                    mp::failure_reason.eq(reason),
                    mp::claimed_at.eq(None::<DateTime<Utc>>),
                    mp::updated_at.eq(Utc::now()),
                ))
                .returning((mp::id, mp::organization_id))
                .get_results(c)
                .await?;
                for (id, org) in &rows {
                    changed(
                        c,
                        *org,
                        *id,
                        Operation::Update,
                        audit(
                            Actor::default(),
                            "purchase.failed",
                            serde_json::json!({"reason": reason}),
                        ),
                    )
                    .await?;
                }
                Ok::<_, StoreError>(rows.len() as u64)
            })
            .await?;
        Ok(n)
    }

    async fn claim_redelivery(
        &self,
        id: PurchaseId,
        by: Actor,
    ) -> std::result::Result<bool, DomainError> {
        let mut conn = self.conn().await?;
        let claimed = conn
            .transaction(async |c| {
                // Not after a refund, even one the purchase row does not show yet.
                let row: Option<IdOrg> = diesel::sql_query(
                    "UPDATE meter_purchases p
                        SET status = 'PENDING', interaction_id = NULL, claimed_at = now(),
                            updated_at = now()
                      WHERE p.id = $1 AND p.status = 'FAILED' AND p.energy_wh > 0
                        AND NOT EXISTS (SELECT 1 FROM orders r WHERE r.reverses_order_id = p.order_id
                                          AND r.status IN ('PENDING', 'COMPLETED'))
                  RETURNING p.id, p.organization_id",
                )
                .bind::<BigInt, _>(id.get())
                .get_result(c)
                .await
                .optional()?;
                let Some(row) = row else {
                    return Ok(false);
                };
                changed(c, row.organization_id, row.id, Operation::Update, audit(by, "purchase.redelivery_requested", serde_json::json!({})))
.await?;
                Ok::<_, StoreError>(true)
            })
            .await?;
        Ok(claimed)
    }

    async fn refund(&self, id: PurchaseId, by: Actor) -> std::result::Result<(), DomainError> {
        refund(self, id, by).await
    }

    async fn set_meter_tariff(
        &self,
        scope: TenantScope,
        meter: MeterId,
        tariff_minor_per_kwh: Option<i64>,
        by: Actor,
    ) -> std::result::Result<bool, DomainError> {
        use crate::schema::meters as me;
        let mut conn = self.conn().await?;
        let found = conn
            .transaction(async |c| {
                let only = scope.organization().map(|o| o.get());
                let org: Option<i64> = me::table
                    .filter(me::id.eq(meter.get()))
                    .filter(me::deleted_at.is_null())
                    .filter(
                        me::organization_id
                            .nullable()
                            .eq(only)
                            .or(only.is_none().into_sql::<Bool>()),
                    )
                    .select(me::organization_id)
                    .for_update()
                    .first(c)
                    .await
                    .optional()?;
                let Some(org) = org else {
                    return Ok(false);
                };
                diesel::update(me::table.find(meter.get()))
                    .set((
                        me::tariff_minor_per_kwh.eq(tariff_minor_per_kwh),
                        me::updated_at.eq(Utc::now()),
                    ))
                    .execute(c)
                    .await?;
                record(
                    c,
                    org,
                    "meter",
                    Some(meter.get()),
                    &audit(
                        by,
                        "meter.tariff_set",
                        serde_json::json!({"tariff_minor_per_kwh": tariff_minor_per_kwh}),
                    ),
                )
                .await?;
                Ok::<_, StoreError>(true)
            })
            .await?;
        Ok(found)
    }

    async fn list(
        &self,
        scope: TenantScope,
        f: PurchaseFilter,
        page: PageRequest,
    ) -> std::result::Result<Vec<Purchase>, DomainError> {
        let mut conn = self.conn().await?;
        let mut q = mp::table.select(Row::as_select()).into_boxed();
        if let Some(org) = scope.organization() {
            q = q.filter(mp::organization_id.eq(org.get()));
        }
        if let Some(s) = f.status {
            q = q.filter(mp::status.eq(s.as_str()));
        }
        if let Some(m) = f.meter_id {
            q = q.filter(mp::meter_id.eq(m.get()));
        }
        if let Some(g) = f.grid_id {
            q = q.filter(mp::grid_id.eq(g.get()));
        }
        if let Some(o) = f.order_id {
            q = q.filter(mp::order_id.eq(o.get()));
        }
        if let Some(t) = f.created_after {
            q = q.filter(mp::created_at.ge(t));
        }
        if let Some(t) = f.created_before {
            q = q.filter(mp::created_at.lt(t));
        }
        if let Some(after) = page.after_id {
            q = q.filter(mp::id.gt(after));
        }
        let rows: Vec<Row> = q
            .order(mp::id)
            .limit(page.fetch_limit())
            .load(&mut conn)
            .await
            .map_err(StoreError::from)?;
        Ok(rows
            .into_iter()
            .map(Purchase::try_from)
            .collect::<Result<_>>()?)
    }

    async fn get(
        &self,
        scope: TenantScope,
        id: PurchaseId,
    ) -> std::result::Result<Option<Purchase>, DomainError> {
        Ok(self.purchase(scope, id).await?)
    }
}

/// FAILED → REFUNDED with the ledger's reversing order (meter wallet → payer). The purchase row
/// stays locked while the ledger posts, so a re-delivery waits and then finds it REFUNDED; a
/// reversal committed by an earlier attempt that did not get to mark the purchase is reused.
async fn refund(db: &Db, id: PurchaseId, by: Actor) -> std::result::Result<(), DomainError> {
    use crate::schema::orders as o;
    let mut conn = db.conn().await?;
    conn.transaction(async |c| {
        let Some((org, order)) = lock_failed(c, id).await? else {
            return Err(StoreError::Domain(DomainError::Conflict(
                "only a FAILED purchase can be refunded".into(),
            )));
        };
        let earlier: Option<i64> = o::table
            .filter(o::reverses_order_id.eq(order))
            .filter(o::status.eq(payments::OrderStatus::Completed.as_str()))
            .select(o::id)
            .first(c)
            .await
            .optional()?;
        let refund_order = match earlier {
            Some(r) => r,
            None => {
                let reversal = post_reversal(
                    db,
                    payments::RefundDraft {
                        order_id: OrderId(order),
                        reason: Some(format!("meter purchase {id} was not delivered")),
                        author_account_id: by.account,
                        author_api_key_id: by.api_key,
                        by_purchase: true,
                    },
                    audit(
                        by,
                        "order.refunded",
                        serde_json::json!({"refunds": order, "purchase_id": id}),
                    ),
                )
                .await?;
                if reversal.status != payments::OrderStatus::Completed {
                    return Err(StoreError::Domain(DomainError::Conflict(format!(
                        "the refund could not be posted: {}",
                        reversal
                            .failure_reason
                            .unwrap_or_else(|| reversal.status.as_str().to_owned())
                    ))));
                }
                reversal.id.get()
            }
        };
        mark_refunded(c, id, org, refund_order, by).await
    })
    .await?;
    Ok(())
}

/// The ledger's reversing order of the purchase's top-up (its own transaction; at most once per
/// order, which the ledger enforces).
async fn post_reversal(
    db: &Db,
    draft: payments::RefundDraft,
    audit: AuditDraft,
) -> std::result::Result<payments::Order, DomainError> {
    payments::LedgerStore::refund(db, TenantScope::All, draft, audit).await
}

async fn lock_failed(c: &mut AsyncPgConnection, id: PurchaseId) -> Result<Option<(i64, i64)>> {
    Ok(mp::table
        .filter(mp::id.eq(id.get()))
        .filter(mp::status.eq(PurchaseStatus::Failed.as_str()))
        .select((mp::organization_id, mp::order_id))
        .for_update()
        .first(c)
        .await
        .optional()?)
}

async fn mark_refunded(
    c: &mut AsyncPgConnection,
    id: PurchaseId,
    organization: i64,
    refund_order: i64,
    by: Actor,
) -> Result<()> {
    diesel::update(mp::table.find(id.get()))
        .set((
            mp::status.eq(PurchaseStatus::Refunded.as_str()),
            mp::refund_order_id.eq(refund_order),
            mp::claimed_at.eq(None::<DateTime<Utc>>),
            mp::updated_at.eq(Utc::now()),
        ))
        .execute(c)
        .await?;
    changed(
        c,
        organization,
        id.get(),
        Operation::Update,
        audit(
            by,
            "purchase.refunded",
            serde_json::json!({"refund_order_id": refund_order}),
        ),
    )
    .await
}
