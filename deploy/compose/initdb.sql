-- The admin DBs of the compose network's three schools (run once, when the volume is new).
CREATE DATABASE vhs_sr_admin;
CREATE DATABASE vhs_ka_admin;
CREATE DATABASE vhs_vs_admin;
