// The canonical schema is `migrations/`; this mirrors it for Diesel's query builder.

diesel::table! {
    organizations (id) {
        id -> Int8,
        name -> Text,
        formal_name -> Nullable<Text>,
        email -> Nullable<Text>,
        phone -> Nullable<Text>,
        address -> Nullable<Text>,
        organization_type -> Text,
        is_platform -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    grids (id) {
        id -> Int8,
        organization_id -> Int8,
        name -> Text,
        timezone -> Text,
        currency -> Bpchar,
        hps_tariff_minor_per_kwh -> Int8,
        fs_tariff_minor_per_kwh -> Int8,
        default_hps_connection_fee_minor -> Int8,
        default_fs_1_phase_connection_fee_minor -> Int8,
        default_fs_3_phase_connection_fee_minor -> Int8,
        pv_capacity_wp -> Int8,
        storage_capacity_wh -> Int8,
        lifeline_threshold_wh -> Int8,
        lifeline_threshold_days -> Int4,
        commissioning_initial_credit_wh -> Int8,
        is_hidden_from_reporting -> Bool,
        is_three_phase_supported -> Bool,
        uses_dual_meter_setup -> Bool,
        is_automatic_meter_install_enabled -> Bool,
        is_automatic_payout_generation_enabled -> Bool,
        is_dcu_connectivity_tracking_enabled -> Bool,
        latitude -> Nullable<Float8>,
        longitude -> Nullable<Float8>,
        deployed_at -> Nullable<Timestamptz>,
        commissioned_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    accounts (id) {
        id -> Int8,
        organization_id -> Int8,
        auth_user_id -> Nullable<Uuid>,
        full_name -> Text,
        email -> Nullable<Text>,
        phone -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    members (id) {
        id -> Int8,
        account_id -> Int8,
        organization_id -> Int8,
        role -> Text,
        training_level -> Int2,
        hidden -> Bool,
        subscribed_to_revenue_notifications -> Bool,
        commissioning_grid_id -> Nullable<Int8>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    agents (id) {
        id -> Int8,
        account_id -> Int8,
        organization_id -> Int8,
        grid_id -> Int8,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    customers (id) {
        id -> Int8,
        account_id -> Int8,
        organization_id -> Int8,
        grid_id -> Int8,
        gender -> Nullable<Text>,
        generator_owned -> Nullable<Text>,
        is_hidden_from_reporting -> Bool,
        lives_primarily_in_the_community -> Bool,
        latitude -> Nullable<Float8>,
        longitude -> Nullable<Float8>,
        total_connection_fee_minor -> Int8,
        total_connection_paid_minor -> Int8,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Int8,
        organization_id -> Int8,
        name -> Text,
        prefix -> Text,
        secret_hash -> Bytea,
        role -> Text,
        created_by_account_id -> Nullable<Int8>,
        created_at -> Timestamptz,
        expires_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
        last_used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    audit_events (id) {
        id -> Int8,
        organization_id -> Int8,
        actor_account_id -> Nullable<Int8>,
        actor_api_key_id -> Nullable<Int8>,
        action -> Text,
        resource_type -> Text,
        resource_id -> Nullable<Int8>,
        details -> Jsonb,
        created_at -> Timestamptz,
    }
}

diesel::joinable!(grids -> organizations (organization_id));
diesel::joinable!(members -> accounts (account_id));
diesel::joinable!(agents -> accounts (account_id));
diesel::joinable!(customers -> accounts (account_id));
diesel::joinable!(api_keys -> organizations (organization_id));

diesel::allow_tables_to_appear_in_same_query!(
    organizations,
    grids,
    accounts,
    members,
    agents,
    customers,
    api_keys,
    audit_events
);
