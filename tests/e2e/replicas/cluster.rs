//! The cluster: every module's instances as processes of its service binary, on PostgreSQL, with a
//! TCP balancer in front of each module that data access calls.

use std::net::SocketAddr;

use carerecord_platform::testing::{ServiceProcess, TestDatabase, workspace_binary};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// The four modules, in the order they start (data access needs the other three).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Module {
    Identity,
    Records,
    Consent,
    Access,
}

impl Module {
    pub(crate) const ALL: [Module; 4] = [
        Module::Identity,
        Module::Records,
        Module::Consent,
        Module::Access,
    ];

    /// The package, which is also the binary's name.
    fn package(self) -> &'static str {
        match self {
            Module::Identity => "carerecord-identity",
            Module::Records => "carerecord-records",
            Module::Consent => "carerecord-consent",
            Module::Access => "carerecord-access",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Every module's instances on PostgreSQL, each a process of its service binary.
pub(crate) struct Cluster {
    /// The modules' databases, in [`Module::ALL`] order.
    pub(crate) databases: Vec<TestDatabase>,
    instances: Vec<Vec<ServiceProcess>>,
    /// Data access's way to identity, records and consent: a balancer in front of each.
    _balancers: Vec<Balancer>,
    stop: CancellationToken,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Cluster {
    /// `replicas` instances of every module on fresh PostgreSQL databases; `None` without
    /// PostgreSQL.
    pub(crate) async fn start(replicas: usize) -> Option<Cluster> {
        let mut databases = Vec::new();
        for _ in Module::ALL {
            databases.push(TestDatabase::postgres().await?);
        }
        let stop = CancellationToken::new();
        let mut cluster = Cluster {
            databases,
            instances: Vec::new(),
            _balancers: Vec::new(),
            stop,
        };
        let mut upstreams: Vec<String> = Vec::new();
        for module in Module::ALL {
            let binary = workspace_binary(module.package(), module.package());
            let binary = binary.to_str().expect("a UTF-8 path");
            let secret = format!("replicas-token-secret-{}", module.package());
            let mut env: Vec<(String, String)> = vec![
                (
                    "DATABASE_URL".into(),
                    cluster.databases[module.index()].url.clone(),
                ),
                ("CARERECORD_TOKEN_SECRET".into(), secret),
                // Eight processes and other tests share PostgreSQL's 100 connections.
                ("CARERECORD_DB_MAX_CONNECTIONS".into(), "3".into()),
                ("CARERECORD_SHUTDOWN_GRACE".into(), "1s".into()),
                (
                    "CARERECORD_RECORDS_WATCH_POLL_INTERVAL".into(),
                    "50ms".into(),
                ),
                (
                    "RUST_LOG".into(),
                    "warn,carerecord_platform::app=info".into(),
                ),
            ];
            if module == Module::Access {
                env.extend([
                    ("CARERECORD_DEV_TOKENS".into(), "true".into()),
                    ("CARERECORD_IDENTITY_ENDPOINT".into(), upstreams[0].clone()),
                    ("CARERECORD_RECORDS_ENDPOINT".into(), upstreams[1].clone()),
                    ("CARERECORD_CONSENT_ENDPOINT".into(), upstreams[2].clone()),
                ]);
            }
            let env: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            // One after the other: the first applies the migrations.
            let mut instances = Vec::new();
            for _ in 0..replicas {
                instances.push(ServiceProcess::start(binary, &env).await);
            }
            if module != Module::Access {
                let balancer =
                    Balancer::start(instances.iter().map(|p| p.addr).collect(), &cluster.stop)
                        .await;
                upstreams.push(format!("http://{}", balancer.addr));
                cluster._balancers.push(balancer);
            }
            cluster.instances.push(instances);
        }
        Some(cluster)
    }

    /// A lazily connected channel to each instance of `module`.
    pub(crate) fn channels(&self, module: Module) -> Vec<Channel> {
        self.instances[module.index()]
            .iter()
            .map(|p| {
                tonic::transport::Endpoint::from_shared(p.endpoint())
                    .expect("endpoint")
                    .connect_lazy()
            })
            .collect()
    }

    /// SIGKILLs instance `replica` of `module`.
    pub(crate) async fn kill(&mut self, module: Module, replica: usize) {
        self.instances[module.index()][replica].kill().await;
    }

    /// Every instance's process id, or `None` for one that is not running.
    pub(crate) fn process_ids(&mut self) -> Vec<Option<u32>> {
        self.instances
            .iter_mut()
            .flatten()
            .map(|p| p.is_running().then(|| p.id()).flatten())
            .collect()
    }

    /// The URL of `module`'s database.
    pub(crate) fn database_url(&self, module: Module) -> &str {
        &self.databases[module.index()].url
    }
}

/// A TCP balancer, as a Kubernetes Service in front of a module's pods: each connection goes to the
/// next instance in turn, or to the one after when that one refuses it (a killed instance).
struct Balancer {
    addr: SocketAddr,
}

impl Balancer {
    async fn start(backends: Vec<SocketAddr>, stop: &CancellationToken) -> Balancer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut next = 0usize;
            loop {
                let accepted = tokio::select! {
                    () = stop.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((mut client, _)) = accepted else {
                    continue;
                };
                next += 1;
                let order: Vec<SocketAddr> = (0..backends.len())
                    .map(|i| backends[(next + i) % backends.len()])
                    .collect();
                let stop = stop.clone();
                tokio::spawn(async move {
                    for backend in order {
                        if let Ok(mut server) = TcpStream::connect(backend).await {
                            tokio::select! {
                                () = stop.cancelled() => {}
                                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            }
                            return;
                        }
                    }
                });
            }
        });
        Balancer { addr }
    }
}
