DROP TABLE audit_events;
DROP TABLE api_keys;
DROP TABLE customers;
DROP TABLE agents;
DROP TABLE members;
DROP TABLE accounts;
DROP TABLE grids;
DROP TABLE organizations;
