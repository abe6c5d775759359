-- Rows written by Flowlet 0.1.0's PostgresStore (see make.py); run in an empty schema.
CREATE TABLE IF NOT EXISTS flowlet_meta (name TEXT PRIMARY KEY, num BIGINT NOT NULL DEFAULT 0, data BYTEA);
CREATE TABLE IF NOT EXISTS flowlet_secrets (name TEXT PRIMARY KEY, type TEXT NOT NULL, data BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS flowlet_keys (name TEXT PRIMARY KEY, data BYTEA NOT NULL);
INSERT INTO flowlet_meta (name, num, data) VALUES ('key_check', 0, '\x019a56fe4e42ea69b7d0e9828a594a210cea9f3793b8f42fa0ab604243d1adf1f1ae2f23f843c2481eecce3a4ee513eec45fbce185f4923b'::bytea);
INSERT INTO flowlet_meta (name, num, data) VALUES ('version', 4, NULL);
INSERT INTO flowlet_secrets (name, type, data) VALUES ('api-jwt', 'jwt', '\x01e05587d09b2e8326bfac00b0520a86e0770efea262d184527191eaff6902211071d35efb38ec7b7c27edfe5fc9a1559c0ca9ec03a6041bd328b48cd3bd979a092a246a1c9265cc4703ee1f8b09c626746a08ca969a926770cb888ccf2206808b92803952770e1d49806b54608c7c431c3547fbe227643db8084086d126c27bc97d486fa8de799a586e0836cc827da1'::bytea);
INSERT INTO flowlet_secrets (name, type, data) VALUES ('payment-key', 'value', '\x01fbac5d15565e2407ead746148d08bf6af64bcbf820ad845fc06f3960cd0aae99e88532d92821ea85c48bb61a95232f14000c7f9dcf45c1239a134fab6544'::bytea);
INSERT INTO flowlet_secrets (name, type, data) VALUES ('staff', 'basic', '\x01f3ca591861fcfbad4ab33ad94330274b6cd37466af15b45e06a318f1471f0ba1204b4d44e4ba9b2aadf704b8d8619ae015fd499d6295194997cefaa587c58124559eff19c2d7631123addac96996c566c47e76c3bd00841a6926eabf845bf9615df8388456946870b04205d43508428079d97596dd1eb6cd21105fbc244514c7451b3e386487410db9471a44379d90801405c0'::bytea);
INSERT INTO flowlet_keys (name, data) VALUES ('csrf-keys', '\x01b77577402b6cd657233e5ad3bcef89901732d8c71153f4822e237d3e547bac3b54434c7a7e3d74f5282150ecddded38d31b90438e18aad3b0c7915f12f26'::bytea);
