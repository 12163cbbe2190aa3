// The canonical schema is `migrations/`; this mirrors it for Diesel's query builder.

// Meter credit purchases and payouts (issue 5, migration 000012).
diesel::table! {
    meter_purchases (id) {
        id -> Int8,
        organization_id -> Int8,
        order_id -> Int8,
        meter_id -> Int8,
        grid_id -> Nullable<Int8>,
        amount_minor -> Int8,
        currency -> Bpchar,
        energy_wh -> Int8,
        tariff_minor_per_kwh -> Nullable<Int8>,
        tariff_source -> Nullable<Text>,
        status -> Text,
        failure_reason -> Nullable<Text>,
        interaction_id -> Nullable<Int8>,
        attempts -> Int4,
        claimed_at -> Nullable<Timestamptz>,
        payer_wallet_id -> Int8,
        meter_wallet_id -> Int8,
        refund_order_id -> Nullable<Int8>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    payouts (id) {
        id -> Int8,
        organization_id -> Int8,
        grid_id -> Int8,
        month -> Text,
        period_start -> Timestamptz,
        period_end -> Timestamptz,
        currency -> Bpchar,
        proposed_amount_minor -> Int8,
        approved_amount_minor -> Nullable<Int8>,
        status -> Text,
        breakdown -> Jsonb,
        bank_code -> Nullable<Text>,
        account_number -> Nullable<Text>,
        account_name -> Nullable<Text>,
        approved_by_account_id -> Nullable<Int8>,
        approved_by_api_key_id -> Nullable<Int8>,
        approved_at -> Nullable<Timestamptz>,
        transfer_reference -> Nullable<Text>,
        transfer_attempt -> Int4,
        provider_transfer_id -> Nullable<Text>,
        failure_reason -> Nullable<Text>,
        paid_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

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
        pv_rental_minor_per_kwp_month -> Int8,
        storage_rental_minor_per_kwh_month -> Int8,
        rental_currency -> Nullable<Bpchar>,
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

// The live-state columns of `grids`, declared apart so `grids` stays within 32 columns.
diesel::table! {
    #[sql_name = "grids"]
    grid_live (id) {
        id -> Int8,
        organization_id -> Int8,
        is_hps_on -> Bool,
        is_hps_on_updated_at -> Nullable<Timestamptz>,
        is_fs_on -> Bool,
        is_fs_on_updated_at -> Nullable<Timestamptz>,
        should_fs_be_on -> Bool,
        should_fs_be_on_updated_at -> Nullable<Timestamptz>,
        deleted_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    dcus (id) {
        id -> Int8,
        organization_id -> Int8,
        grid_id -> Nullable<Int8>,
        external_system -> Text,
        external_reference -> Text,
        communication_protocol -> Text,
        nickname -> Nullable<Text>,
        is_online -> Bool,
        is_online_updated_at -> Nullable<Timestamptz>,
        last_online_at -> Nullable<Timestamptz>,
        last_seen_at -> Nullable<Timestamptz>,
        signal_rssi -> Nullable<Int4>,
        signal_snr -> Nullable<Float8>,
        latitude -> Nullable<Float8>,
        longitude -> Nullable<Float8>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    mppts (id) {
        id -> Int8,
        organization_id -> Int8,
        grid_id -> Int8,
        external_system -> Text,
        external_reference -> Text,
        external_id -> Text,
        mppt_type -> Text,
        capacity_w -> Int8,
        azimuth_deg -> Nullable<Float8>,
        tilt_deg -> Nullable<Float8>,
        installed_at -> Timestamptz,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    poles (id) {
        id -> Int8,
        organization_id -> Int8,
        grid_id -> Int8,
        external_reference -> Text,
        nickname -> Nullable<Text>,
        is_virtual -> Bool,
        latitude -> Float8,
        longitude -> Float8,
        location_accuracy_m -> Nullable<Float8>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    connections (id) {
        id -> Int8,
        organization_id -> Int8,
        grid_id -> Int8,
        customer_id -> Int8,
        upload_uuid -> Nullable<Text>,
        external_system -> Text,
        document_type -> Nullable<Text>,
        document_id -> Nullable<Text>,
        paid_minor -> Int8,
        currency -> Bpchar,
        women_impacted -> Int4,
        is_public -> Bool,
        is_commercial -> Bool,
        is_residential -> Bool,
        is_lifeline -> Nullable<Bool>,
        is_building_wired -> Bool,
        is_using_led_bulbs -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    connection_requested_meters (id) {
        id -> Int8,
        connection_id -> Int8,
        organization_id -> Int8,
        meter_type -> Text,
        meter_phase -> Text,
        fee_minor -> Int8,
        created_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    meters (id) {
        id -> Int8,
        organization_id -> Int8,
        external_system -> Text,
        external_reference -> Text,
        communication_protocol -> Text,
        meter_type -> Text,
        meter_phase -> Text,
        version -> Nullable<Text>,
        nickname -> Nullable<Text>,
        is_cabin_meter -> Bool,
        hps_mode_power_limit_w -> Int4,
        grid_id -> Nullable<Int8>,
        connection_id -> Nullable<Int8>,
        pole_id -> Nullable<Int8>,
        dcu_id -> Nullable<Int8>,
        assigned_at -> Nullable<Timestamptz>,
        is_on -> Nullable<Bool>,
        credit_wh -> Nullable<Int8>,
        power_w -> Nullable<Float8>,
        voltage_v -> Nullable<Float8>,
        power_limit_w -> Nullable<Int4>,
        signal_rssi -> Nullable<Int4>,
        signal_snr -> Nullable<Float8>,
        last_seen_at -> Nullable<Timestamptz>,
        observed_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
        lorawan_dev_eui -> Nullable<Text>,
        decoder_key -> Nullable<Text>,
        last_sts_token_issued_at -> Nullable<Timestamptz>,
        last_install_session_id -> Nullable<Int8>,
        commissioned_at -> Nullable<Timestamptz>,
        manual_mode -> Bool,
        tariff_minor_per_kwh -> Nullable<Int8>,
    }
}

diesel::table! {
    inbound_events (id) {
        id -> Int8,
        source -> Text,
        event_type -> Text,
        dedup_key -> Text,
        dev_eui -> Nullable<Text>,
        payload -> Jsonb,
        received_at -> Timestamptz,
        locked_until -> Nullable<Timestamptz>,
        attempts -> Int4,
        last_error -> Nullable<Text>,
        processed_at -> Nullable<Timestamptz>,
        outcome -> Nullable<Text>,
        early_retries -> Int4,
    }
}

diesel::table! {
    meter_interactions (id) {
        id -> Int8,
        organization_id -> Int8,
        grid_id -> Nullable<Int8>,
        meter_id -> Int8,
        kind -> Text,
        status -> Text,
        origin -> Text,
        priority -> Int4,
        power_limit_w -> Nullable<Int4>,
        energy_wh -> Nullable<Int8>,
        token -> Nullable<Text>,
        commissioning_id -> Nullable<Int8>,
        batch_execution_id -> Nullable<Int8>,
        intended -> Nullable<Jsonb>,
        expires_at -> Nullable<Timestamptz>,
        parked_for_retry -> Bool,
        superseded_by -> Nullable<Int8>,
        coalesced_requests -> Int4,
        history -> Jsonb,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        // The delivery columns (send_after, delivery_stage, stage_deadline, attempts, retries,
        // queue_item_id, phase, phase_results, sent_at, acked_at, result, verified_by) and the
        // downlink_lanes table are read and written in SQL by deliveries.rs (32-column limit).
        retry_of -> Nullable<Int8>,
    }
}

diesel::table! {
    install_sessions (id) {
        id -> Int8,
        organization_id -> Int8,
        meter_id -> Int8,
        operation -> Text,
        registration_status -> Text,
        registration_reason -> Nullable<Text>,
        author_account_id -> Nullable<Int8>,
        author_api_key_id -> Nullable<Int8>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    meter_commissionings (id) {
        id -> Int8,
        organization_id -> Int8,
        meter_id -> Int8,
        install_session_id -> Int8,
        status -> Text,
        failure_reason -> Nullable<Text>,
        retry_of -> Nullable<Int8>,
        steps_seen_at -> Nullable<Timestamptz>,
        lease_until -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        finished_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    meter_shadows (meter_id) {
        meter_id -> Int8,
        organization_id -> Int8,
        state -> Jsonb,
        version -> Int8,
        drifted -> Bool,
        updated_at -> Timestamptz,
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
    audit_events,
    grid_live,
    dcus,
    mppts,
    poles,
    connections,
    connection_requested_meters,
    meters,
    meter_interactions,
    meter_shadows,
    install_sessions,
    meter_commissionings
);

diesel::joinable!(connection_requested_meters -> connections (connection_id));
diesel::joinable!(connections -> customers (customer_id));

// Money (issue 5): wallets, the double-entry ledger and orders.
diesel::table! {
    wallets (id) {
        id -> Int8,
        owner_type -> Text,
        owner_organization_id -> Nullable<Int8>,
        agent_id -> Nullable<Int8>,
        customer_id -> Nullable<Int8>,
        meter_id -> Nullable<Int8>,
        connection_id -> Nullable<Int8>,
        system_key -> Nullable<Text>,
        organization_id -> Nullable<Int8>,
        currency -> Bpchar,
        balance_minor -> Int8,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    orders (id) {
        id -> Int8,
        organization_id -> Int8,
        sender_wallet_id -> Int8,
        receiver_wallet_id -> Int8,
        amount_minor -> Int8,
        currency -> Bpchar,
        order_type -> Nullable<Text>,
        status -> Text,
        sender_owner_type -> Text,
        receiver_owner_type -> Text,
        grid_id -> Nullable<Int8>,
        is_hidden_from_reporting -> Bool,
        provider -> Nullable<Text>,
        external_reference -> Nullable<Text>,
        provider_transaction_id -> Nullable<Text>,
        payment_method -> Nullable<Text>,
        payment_channel -> Nullable<Text>,
        author_account_id -> Nullable<Int8>,
        author_api_key_id -> Nullable<Int8>,
        idempotency_key -> Nullable<Text>,
        reverses_order_id -> Nullable<Int8>,
        failure_reason -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        completed_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    ledger_transactions (id) {
        id -> Int8,
        order_id -> Int8,
        kind -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    ledger_entries (id) {
        id -> Int8,
        transaction_id -> Int8,
        wallet_id -> Int8,
        currency -> Bpchar,
        amount_minor -> Int8,
        balance_after_minor -> Int8,
        created_at -> Timestamptz,
    }
}

diesel::joinable!(ledger_entries -> ledger_transactions (transaction_id));
diesel::joinable!(ledger_transactions -> orders (order_id));
diesel::allow_tables_to_appear_in_same_query!(wallets, orders, ledger_transactions, ledger_entries);

diesel::table! {
    payment_provider_credentials (id) {
        id -> Int8,
        organization_id -> Int8,
        provider -> Text,
        public_key_encrypted -> Nullable<Bytea>,
        secret_key_encrypted -> Bytea,
        webhook_hash_encrypted -> Nullable<Bytea>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::joinable!(payment_provider_credentials -> organizations (organization_id));
diesel::allow_tables_to_appear_in_same_query!(payment_provider_credentials, organizations);
