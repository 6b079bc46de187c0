"""The API keys of the benchmarks' shopper servers (README, "Keys"): fixed and public, for
servers on loopback that live as long as one run. Behaviour events go with the ingest key
(as a shop's frontend sends them: not audited), catalog changes with the admin token."""

ADMIN_TOKEN = "benchmark-admin-token-on-loopback"
INGEST_KEY = "benchmark-ingest-key-on-loopback"
SERVER_ENV = {"SHOPPER_ADMIN_TOKEN": ADMIN_TOKEN, "SHOPPER_INGEST_KEY": INGEST_KEY}
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
INGEST = {"authorization": f"Bearer {INGEST_KEY}"}
