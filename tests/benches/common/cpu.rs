//! CPU time per call, split by who spent it: the services' runtime threads, the load generator's
//! runtime threads, and the PostgreSQL backends serving this process's connections. Throughput on a
//! shared machine moves with whatever else runs; the CPU a call costs moves much less, so it is
//! what says where a path's time goes.
//!
//! Threads are told apart by name (the benches name their runtimes' threads [`SERVICES`] and
//! [`LOAD`]); PostgreSQL backends are found through `pg_stat_activity` by the client ports of this
//! process's sockets, and told apart by the service whose database they serve (known by one of its
//! tables). Times come from `/proc` (Linux only; elsewhere every figure is zero).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use sqlx::Connection;

/// The services' runtime thread name.
pub const SERVICES: &str = "services";
/// The load generator's runtime thread name.
pub const LOAD: &str = "load";

/// CPU spent so far, by spender.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    services: Duration,
    load: Duration,
    /// By backend pid: the service whose database it serves, and its CPU.
    postgres: HashMap<u32, (&'static str, Duration)>,
}

/// CPU spent between two snapshots.
#[derive(Debug, Clone, Default)]
pub struct Spent {
    pub services: Duration,
    pub load: Duration,
    pub postgres: Duration,
    /// PostgreSQL's share by the service whose database it served.
    pub postgres_by_service: BTreeMap<&'static str, Duration>,
}

impl Spent {
    /// Microseconds per call of `calls`: services, PostgreSQL, load generator.
    pub fn per_call(&self, calls: usize) -> String {
        let us = |d: Duration| d.as_secs_f64() * 1e6 / calls.max(1) as f64;
        let by_service: Vec<String> = self
            .postgres_by_service
            .iter()
            .filter(|(_, d)| !d.is_zero())
            .map(|(service, d)| format!("{service} {:.0}", us(*d)))
            .collect();
        format!(
            "CPU per call: services {:.0} us, PostgreSQL {:.0} us ({}), load generator {:.0} us",
            us(self.services),
            us(self.postgres),
            by_service.join(", "),
            us(self.load)
        )
    }

    pub fn add(&mut self, other: &Spent) {
        self.services += other.services;
        self.load += other.load;
        self.postgres += other.postgres;
        for (service, d) in &other.postgres_by_service {
            *self.postgres_by_service.entry(service).or_default() += *d;
        }
    }
}

impl Spent {
    /// CPU per second of `elapsed`, as a share of one core: what runs with no calls at all.
    pub fn per_second(&self, elapsed: Duration) -> String {
        let share = |d: Duration| d.as_secs_f64() / elapsed.as_secs_f64().max(1e-9);
        format!(
            "CPU in cores: services {:.3}, PostgreSQL {:.3}, load generator {:.3}",
            share(self.services),
            share(self.postgres),
            share(self.load)
        )
    }
}

fn ticks_to_duration(ticks: u64) -> Duration {
    // USER_HZ is 100 on every Linux this runs on.
    Duration::from_millis(ticks * 10)
}

/// utime + stime of a `/proc/.../stat` line.
fn stat_cpu(stat: &str) -> Option<Duration> {
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(ticks_to_duration(utime + stime))
}

fn threads_cpu() -> (Duration, Duration) {
    let (mut services, mut load) = (Duration::ZERO, Duration::ZERO);
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return (services, load);
    };
    for task in tasks.flatten() {
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let cpu = std::fs::read_to_string(path.join("stat"))
            .ok()
            .and_then(|s| stat_cpu(&s))
            .unwrap_or_default();
        match name.trim() {
            SERVICES => services += cpu,
            LOAD => load += cpu,
            _ => {}
        }
    }
    (services, load)
}

/// The local ports of this process's TCP connections to `server_port`.
fn client_ports(server_port: u16) -> Vec<u16> {
    let mut inodes = HashSet::new();
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                let target = target.to_string_lossy().into_owned();
                if let Some(inode) = target
                    .strip_prefix("socket:[")
                    .and_then(|s| s.strip_suffix(']'))
                {
                    inodes.insert(inode.to_owned());
                }
            }
        }
    }
    let mut ports = Vec::new();
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(remote), Some(inode)) =
                (fields.get(1), fields.get(2), fields.get(9))
            else {
                continue;
            };
            let port = |address: &str| {
                address
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
            };
            if port(remote) == Some(server_port) && inodes.contains(*inode) {
                ports.extend(port(local));
            }
        }
    }
    ports
}

/// Measures CPU by spender; PostgreSQL only when `server_url` names a PostgreSQL server.
pub struct CpuMeter {
    server_url: Option<String>,
    server_port: u16,
    /// The service each database belongs to, by database name.
    services: Mutex<HashMap<String, &'static str>>,
}

/// One table each service's database has and no other's.
const TABLES: [(&str, &str); 4] = [
    ("identity", "patients"),
    ("records", "record_versions"),
    ("consent", "consent_directives"),
    ("access", "audit_entries"),
];

/// `url` naming database `name` instead of its own.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let base = base.rsplit_once('/').map_or(base, |(server, _)| server);
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

impl CpuMeter {
    pub fn new(server_url: Option<&str>) -> Self {
        let server_port = server_url.and_then(port_of).unwrap_or(5432);
        CpuMeter {
            server_url: server_url.map(str::to_owned),
            server_port,
            services: Mutex::new(HashMap::new()),
        }
    }

    /// The service whose database `name` is ("other" if none of [`TABLES`] is there).
    async fn service_of(&self, server_url: &str, name: &str) -> &'static str {
        if let Some(service) = self.services.lock().expect("services").get(name) {
            return service;
        }
        let mut service = "other";
        if let Ok(mut conn) = sqlx::PgConnection::connect(&with_database(server_url, name)).await {
            for (candidate, table) in TABLES {
                let found: Option<(bool,)> = sqlx::query_as("SELECT to_regclass($1) IS NOT NULL")
                    .bind(table)
                    .fetch_optional(&mut conn)
                    .await
                    .ok()
                    .flatten();
                if found.is_some_and(|(f,)| f) {
                    service = candidate;
                    break;
                }
            }
            conn.close().await.ok();
        }
        self.services
            .lock()
            .expect("services")
            .insert(name.to_owned(), service);
        service
    }

    async fn postgres(&self) -> HashMap<u32, (&'static str, Duration)> {
        let mut cpu = HashMap::new();
        let Some(url) = &self.server_url else {
            return cpu;
        };
        let ports: Vec<i32> = client_ports(self.server_port)
            .into_iter()
            .map(i32::from)
            .collect();
        let Ok(mut conn) = sqlx::PgConnection::connect(url).await else {
            return cpu;
        };
        let backends: Vec<(i32, String)> =
            sqlx::query_as("SELECT pid, datname FROM pg_stat_activity WHERE client_port = ANY($1)")
                .bind(&ports)
                .fetch_all(&mut conn)
                .await
                .unwrap_or_default();
        conn.close().await.ok();
        for (pid, database) in backends {
            let pid = pid as u32;
            if let Some(spent) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| stat_cpu(&s))
            {
                cpu.insert(pid, (self.service_of(url, &database).await, spent));
            }
        }
        cpu
    }

    pub async fn snapshot(&self) -> Snapshot {
        let (services, load) = threads_cpu();
        Snapshot {
            services,
            load,
            postgres: self.postgres().await,
        }
    }

    /// CPU spent since `before`. A backend that appeared since counts whole (it was started in
    /// the interval); one that went away is lost.
    pub async fn since(&self, before: &Snapshot) -> Spent {
        let now = self.snapshot().await;
        let mut spent = Spent {
            services: now.services.saturating_sub(before.services),
            load: now.load.saturating_sub(before.load),
            ..Spent::default()
        };
        for (pid, (service, cpu)) in &now.postgres {
            let earlier = before.postgres.get(pid).map_or(Duration::ZERO, |(_, d)| *d);
            let delta = cpu.saturating_sub(earlier);
            spent.postgres += delta;
            *spent.postgres_by_service.entry(service).or_default() += delta;
        }
        spent
    }
}

/// The port of a `postgres://user@host:port/db` URL.
fn port_of(url: &str) -> Option<u16> {
    let authority = url.split_once("://")?.1.split('/').next()?;
    let host_port = authority.rsplit('@').next()?;
    host_port.rsplit_once(':')?.1.parse().ok()
}
