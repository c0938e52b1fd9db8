//! A private PostgreSQL cluster run from the system's PostgreSQL binaries, the default when
//! no database URL is configured.
//!
//! Nobody gets in without a password: `pg_hba.conf` admits scram-sha-256 logins only (a
//! cluster made by an older Warden with `trust` is converted on start). Three roles, their
//! generated passwords kept in `<data_dir>/postgres-auth/` (directory 0700, files 0600):
//! `postgres` (the superuser, used only here to set the others up), `warden_owner` (owns
//! the schema and its tables, runs the migrations) and `warden_app` (the daemon's runtime
//! role: reads and writes rows, owns nothing, so it cannot alter a table or switch off the
//! append-only triggers, and is no superuser, so no `COPY … TO PROGRAM`).
//!
//! PostgreSQL refuses to run as root, so when wardend runs as root the cluster is created
//! and started as the `postgres` user (`runuser`), and its directory must be reachable by
//! that user.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

/// A running private cluster. `stop` shuts it down only if this process started it: a
/// command such as `wardend device add` run beside a live daemon adopts the daemon's cluster
/// and must leave it running. It is not stopped on drop, so a crash leaves it for the next
/// start to reuse.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_postgres: bool,
    started_here: bool,
    secrets: Secrets,
}

/// The generated passwords of the three roles.
#[derive(Clone, Default)]
struct Secrets {
    superuser: String,
    owner: String,
    runtime: String,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets([redacted])")
    }
}

/// The runtime role's name.
pub const RUNTIME_ROLE: &str = "warden_app";
/// The migration owner's name.
pub const OWNER_ROLE: &str = "warden_owner";

impl Secrets {
    /// Reads the passwords kept in `<data_dir>/postgres-auth`, making any that is missing.
    fn load(data_dir: &Path) -> anyhow::Result<Secrets> {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = data_dir.join("postgres-auth");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        let one = |name: &str| -> anyhow::Result<String> {
            let path = dir.join(format!("{name}.password"));
            if let Ok(text) = std::fs::read_to_string(&path) {
                let text = text.trim().to_owned();
                if !text.is_empty() {
                    return Ok(text);
                }
            }
            let mut b = [0u8; 24];
            getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
            let pw = hex::encode(b);
            write_private(&path, &pw)?;
            Ok(pw)
        };
        Ok(Secrets {
            superuser: one("postgres")?,
            owner: one(OWNER_ROLE)?,
            runtime: one(RUNTIME_ROLE)?,
        })
    }
}

/// Writes `text` to a new file readable by its owner only, replacing any earlier one.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(path);
    crate::private_file::create(path, text)
}

fn is_root() -> bool {
    // `id -u` avoids unsafe libc calls (unsafe code is forbidden in this workspace).
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// The newest installed PostgreSQL server's `bin` directory.
pub fn find_binaries() -> anyhow::Result<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => Ok(bin),
        None => bail!(
            "PostgreSQL server binaries not found under /usr/lib/postgresql: install them with \
             `apt-get install -y postgresql`, or set database.url (WARDEN_DATABASE__URL) to an existing server"
        ),
    }
}

impl EmbeddedPostgres {
    /// Creates the cluster under `data_dir/postgres` if needed and starts it (or adopts a
    /// cluster already running there).
    pub fn start(data_dir: &Path) -> anyhow::Result<Self> {
        let bin = find_binaries()?;
        let as_postgres = is_root();
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let data_dir = data_dir
            .canonicalize()
            .with_context(|| format!("resolving {}", data_dir.display()))?;
        let dir = data_dir.join("postgres");
        let mut pg = Self {
            bin,
            dir,
            port: 0,
            as_postgres,
            started_here: false,
            secrets: Secrets::default(),
        };
        if as_postgres && !Self::postgres_can_reach(&data_dir) {
            bail!(
                "the postgres user cannot reach {}: PostgreSQL refuses to run as root, so wardend runs it as \
                 `postgres`; choose a data_dir outside /root (e.g. --data-dir /var/lib/warden)",
                data_dir.display()
            );
        }
        let secrets = Secrets::load(&data_dir)?;
        if !pg.dir.join("PG_VERSION").is_file() {
            std::fs::create_dir_all(&pg.dir)?;
            pg.chown(&pg.dir)?;
            // The superuser's password reaches initdb in a file only it can read, removed
            // at once.
            let pwfile = data_dir.join("postgres.pwfile");
            write_private(&pwfile, &secrets.superuser)?;
            pg.chown(&pwfile)?;
            let made = pg.run(
                "initdb",
                &[
                    "-D",
                    &pg.dir_str(),
                    "-A",
                    "scram-sha-256",
                    "--pwfile",
                    &pwfile.to_string_lossy(),
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                ],
            );
            let _ = std::fs::remove_file(&pwfile);
            made.context("initdb failed")?;
            tracing::info!(dir = %pg.dir.display(), "created private postgres cluster");
        }
        pg.secrets = secrets;
        if let Some(port) = pg.running_port() {
            pg.port = port;
            tracing::info!(port, "adopting private postgres already running");
            return Ok(pg);
        }
        pg.port = free_port()?;
        pg.started_here = true;
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=100",
            pg.port,
            pg.dir_str()
        );
        let log = pg.dir.join("server.log");
        pg.run(
            "pg_ctl",
            &[
                "-D",
                &pg.dir_str(),
                "-l",
                &log.to_string_lossy(),
                "-o",
                &opts,
                "-w",
                "-t",
                "30",
                "start",
            ],
        )
        .with_context(|| format!("pg_ctl start failed; see {}", log.display()))?;
        tracing::info!(port = pg.port, dir = %pg.dir.display(), "private postgres started");
        Ok(pg)
    }

    /// The runtime role's URL: what the daemon uses.
    pub fn url(&self) -> String {
        self.url_as(RUNTIME_ROLE, &self.secrets.runtime)
    }

    /// The migration owner's URL.
    pub fn owner_url(&self) -> String {
        self.url_as(OWNER_ROLE, &self.secrets.owner)
    }

    /// The URL without a password, which the cluster refuses (printed by the demo).
    pub fn anonymous_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn url_as(&self, role: &str, password: &str) -> String {
        format!(
            "postgres://{role}:{password}@127.0.0.1:{}/postgres",
            self.port
        )
    }

    /// Sets the cluster up for password logins only, with the owner and runtime roles and
    /// the runtime role's privileges (idempotent: run on every start). A cluster an older
    /// Warden made with `trust` is converted here: its superuser gets its password before
    /// `trust` goes.
    pub async fn secure(&self) -> anyhow::Result<()> {
        use sqlx::Connection as _;
        let url = self.url_as("postgres", &self.secrets.superuser);
        let mut su = sqlx::PgConnection::connect(&url)
            .await
            .context("signing in to the private postgres as its superuser (the password in postgres-auth/postgres.password)")?;
        let set_password = |role: &str, pw: &str| format!("ALTER ROLE {role} PASSWORD '{pw}'");
        let mut steps: Vec<String> = vec![
            set_password("postgres", &self.secrets.superuser),
            format!(
                "DO $$ BEGIN \
                   IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{OWNER_ROLE}') THEN \
                     CREATE ROLE {OWNER_ROLE} LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB; END IF; \
                   IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{RUNTIME_ROLE}') THEN \
                     CREATE ROLE {RUNTIME_ROLE} LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB NOINHERIT; END IF; \
                 END $$"
            ),
            set_password(OWNER_ROLE, &self.secrets.owner),
            set_password(RUNTIME_ROLE, &self.secrets.runtime),
            format!("ALTER SCHEMA public OWNER TO {OWNER_ROLE}"),
            "REVOKE CREATE ON SCHEMA public FROM PUBLIC".into(),
            // What an older Warden created as the superuser passes to the owner.
            format!(
                "DO $$ DECLARE r record; BEGIN \
                   FOR r IN SELECT c.oid::regclass AS name, c.relkind FROM pg_class c \
                       JOIN pg_namespace n ON n.oid = c.relnamespace \
                       WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') \
                         AND pg_get_userbyid(c.relowner) <> '{OWNER_ROLE}' \
                         AND NOT (c.relkind = 'S' AND EXISTS (SELECT 1 FROM pg_depend d \
                             WHERE d.objid = c.oid AND d.deptype IN ('a', 'i'))) LOOP \
                     EXECUTE format('ALTER %s %s OWNER TO {OWNER_ROLE}', \
                       CASE r.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW' \
                         WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'f' THEN 'FOREIGN TABLE' \
                         ELSE 'TABLE' END, r.name); \
                   END LOOP; \
                   FOR r IN SELECT p.oid::regprocedure AS name FROM pg_proc p \
                       JOIN pg_namespace n ON n.oid = p.pronamespace \
                       WHERE n.nspname = 'public' AND pg_get_userbyid(p.proowner) <> '{OWNER_ROLE}' LOOP \
                     EXECUTE format('ALTER ROUTINE %s OWNER TO {OWNER_ROLE}', r.name); \
                   END LOOP; \
                 END $$"
            ),
            format!("GRANT USAGE ON SCHEMA public TO {RUNTIME_ROLE}"),
            format!(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {OWNER_ROLE} IN SCHEMA public \
                 GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {RUNTIME_ROLE}"
            ),
            format!(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {OWNER_ROLE} IN SCHEMA public \
                 GRANT USAGE, SELECT ON SEQUENCES TO {RUNTIME_ROLE}"
            ),
            // Identity columns need USAGE only; `setval` (UPDATE) could make ids collide.
            format!(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {OWNER_ROLE} IN SCHEMA public \
                 REVOKE UPDATE ON SEQUENCES FROM {RUNTIME_ROLE}"
            ),
            // No temporary tables or new schemas for anyone but the owner.
            "REVOKE CREATE, TEMPORARY ON DATABASE postgres FROM PUBLIC".into(),
        ];
        steps.extend(grants(RUNTIME_ROLE));
        for step in steps {
            sqlx::query(sqlx::AssertSqlSafe(step))
                .execute(&mut su)
                .await
                .context("setting up the private postgres's roles")?;
        }
        // Password logins only, from now on (and for a converted `trust` cluster, at once).
        let hba = "# Written by wardend on every start: password (scram-sha-256) logins only.\n\
                   local all all scram-sha-256\n\
                   host all all 127.0.0.1/32 scram-sha-256\n\
                   host all all ::1/128 scram-sha-256\n";
        let path = self.dir.join("pg_hba.conf");
        if std::fs::read_to_string(&path).ok().as_deref() != Some(hba) {
            std::fs::write(&path, hba).with_context(|| format!("writing {}", path.display()))?;
            sqlx::query("SELECT pg_reload_conf()")
                .execute(&mut su)
                .await?;
            tracing::info!("private postgres: password logins only (pg_hba.conf rewritten)");
        }
        su.close().await?;
        Ok(())
    }

    /// Stops the cluster (fast shutdown: open transactions roll back, committed data stays).
    pub fn stop(&self) -> anyhow::Result<()> {
        if !self.started_here {
            tracing::info!("leaving the adopted private postgres running");
            return Ok(());
        }
        self.run(
            "pg_ctl",
            &["-D", &self.dir_str(), "-m", "fast", "-w", "stop"],
        )
        .context("pg_ctl stop failed")?;
        tracing::info!("private postgres stopped");
        Ok(())
    }

    fn dir_str(&self) -> String {
        self.dir.to_string_lossy().into_owned()
    }

    fn postgres_can_reach(dir: &Path) -> bool {
        Command::new("runuser")
            .args(["-u", "postgres", "--", "test", "-x"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success())
    }

    fn chown(&self, path: &Path) -> anyhow::Result<()> {
        if self.as_postgres {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(path)
                .status()?
                .success();
            if !ok {
                bail!("chown postgres {} failed", path.display());
            }
        }
        Ok(())
    }

    /// The port of a postmaster already running in this directory, if any.
    fn running_port(&self) -> Option<u16> {
        let status = self
            .command("pg_ctl", &["-D", &self.dir_str(), "status"])
            .stdout(Stdio::null())
            .status()
            .ok()?;
        if !status.success() {
            return None;
        }
        // Line 4 of postmaster.pid is the port.
        let pid = std::fs::read_to_string(self.dir.join("postmaster.pid")).ok()?;
        pid.lines().nth(3)?.trim().parse().ok()
    }

    fn command(&self, tool: &str, args: &[&str]) -> Command {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        cmd.args(args);
        cmd
    }

    fn run(&self, tool: &str, args: &[&str]) -> anyhow::Result<()> {
        let out = self
            .command(tool, args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {tool}"))?;
        if !out.status.success() {
            bail!(
                "{tool} exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

/// A port free on the loopback interface right now.
fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

/// The runtime role's privileges on what exists now (new tables get them by default
/// privileges); run again after migrations as the owner. Rows of ordinary tables are read
/// and written; the evidence tables, those guarded by the append-only trigger functions
/// (`signals`, `quarantine`, `acks`, `incident_events`, `audit`, `ooh_updates`,
/// `page_attempts`, `caller_message_attempts`, and any later table that uses them), are
/// read and insert only: the code never updates or deletes them, so the role is not even
/// allowed to try (the triggers stay as the second wall, for the owner). The migration
/// history is read-only. `role` is an SQL identifier (quoted when it needs to be).
pub fn grants(role: &str) -> Vec<String> {
    vec![
        format!("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}"),
        format!("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}"),
        format!("REVOKE UPDATE ON ALL SEQUENCES IN SCHEMA public FROM {role}"),
        format!(
            "DO $$ DECLARE r record; BEGIN \
               FOR r IN SELECT DISTINCT t.tgrelid::regclass AS tbl FROM pg_trigger t \
                   JOIN pg_proc p ON p.oid = t.tgfoid \
                   WHERE p.proname IN ('warden_append_only', 'warden_history_only') \
                     AND p.pronamespace = 'public'::regnamespace LOOP \
                 EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON %s FROM {role}', r.tbl); \
               END LOOP; \
               IF to_regclass('public._sqlx_migrations') IS NOT NULL THEN \
                 REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON public._sqlx_migrations FROM {role}; \
               END IF; \
             END $$"
        ),
    ]
}

/// `name` as an SQL identifier, double-quoted.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
