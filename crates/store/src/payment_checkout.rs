//! Public look-ups for the hosted-payment flows (no tenant: the meter serial is what a payer
//! knows; what is answered reveals no more than the payment page itself).

use async_trait::async_trait;
use diesel::sql_types::{BigInt, Bool, Nullable, Text};
use diesel_async::RunQueryDsl;
use kernel::{Currency, DomainError, MeterId, OrganizationId, WalletId};
use payments::checkout::{PayableMeter, PayableMeters};

use crate::{Db, StoreError};

#[derive(diesel::QueryableByName)]
struct MeterRow {
    #[diesel(sql_type = BigInt)]
    meter_id: i64,
    #[diesel(sql_type = BigInt)]
    organization_id: i64,
    #[diesel(sql_type = BigInt)]
    wallet_id: i64,
    #[diesel(sql_type = Text)]
    currency: String,
    #[diesel(sql_type = Bool)]
    commissioned: bool,
    #[diesel(sql_type = Nullable<Text>)]
    grid_name: Option<String>,
}

// A live meter on a live grid, with its wallet. Serials are unique among live meters.
const PAYABLE_METER: &str = "\
SELECT m.id AS meter_id, m.organization_id, w.id AS wallet_id, w.currency::text AS currency,
       (m.commissioned_at IS NOT NULL) AS commissioned, g.name AS grid_name
  FROM meters m
  JOIN grids g ON g.id = m.grid_id AND g.deleted_at IS NULL
  JOIN wallets w ON w.meter_id = m.id
 WHERE m.external_reference = $1 AND m.deleted_at IS NULL
 ORDER BY m.id
 LIMIT 1";

#[async_trait]
impl PayableMeters for Db {
    async fn payable_meter(&self, serial: &str) -> Result<Option<PayableMeter>, DomainError> {
        let mut conn = self.conn().await?;
        let row: Option<MeterRow> = diesel::sql_query(PAYABLE_METER)
            .bind::<Text, _>(serial)
            .get_result(&mut conn)
            .await
            .map(Some)
            .or_else(|e| match e {
                diesel::result::Error::NotFound => Ok(None),
                e => Err(e),
            })
            .map_err(StoreError::from)?;
        row.map(|r| {
            Ok(PayableMeter {
                meter_id: MeterId(r.meter_id),
                organization_id: OrganizationId(r.organization_id),
                wallet_id: WalletId(r.wallet_id),
                currency: Currency::parse(&r.currency).map_err(|_| {
                    DomainError::Internal("a wallet with an invalid currency".into())
                })?,
                commissioned: r.commissioned,
                grid_name: r.grid_name,
            })
        })
        .transpose()
    }
}
