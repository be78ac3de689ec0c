//! Real Redis deployments for the tests, on free loopback ports, stopped
//! when dropped: one server, a 3-master cluster (`redis-cli --cluster
//! create`), and a master with one replica watched by three sentinels.
//! `REDIS_SERVER_BIN` and `REDIS_CLI_BIN` name the binaries (default: the
//! PATH's; scripts/test installs them).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn server_binary() -> String {
    std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into())
}

fn cli_binary() -> String {
    std::env::var("REDIS_CLI_BIN").unwrap_or_else(|_| "redis-cli".into())
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn(args: &[String]) -> Child {
    Command::new(server_binary())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {} ({e}): run scripts/test, which installs it",
                server_binary()
            )
        })
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis on {port} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `redis-cli -p PORT ARGS…`, its output.
pub fn cli(port: u16, args: &[&str]) -> String {
    let output = Command::new(cli_binary())
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} ({e}): run scripts/test", cli_binary()));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "authgate-{what}-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One redis-server process.
pub struct RedisServer {
    pub port: u16,
    extra: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(Vec::new())
    }

    fn start_with(extra: Vec<String>) -> Self {
        let mut server = RedisServer {
            port: free_port(),
            extra,
            child: None,
        };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts (again) on the same port and waits until it answers.
    pub fn restart(&mut self) {
        self.stop();
        let mut args: Vec<String> = [
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "yes",
        ]
        .iter()
        .map(|arg| arg.to_string())
        .collect();
        args.extend(self.extra.iter().cloned());
        self.child = Some(spawn(&args));
        wait_for_port(self.port);
    }

    /// Kills the server.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `redis-cli` against this server.
    pub fn cli(&self, args: &[&str]) -> String {
        cli(self.port, args)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Redis Cluster of three masters (no replicas).
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    _dir: TempDir,
}

impl RedisCluster {
    /// Starts a cluster; a start that fails (a free port taken by another
    /// test's server between being found and bound) is retried on new
    /// ports, twice at most.
    pub fn start() -> Self {
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start() {
                Ok(cluster) => return cluster,
                Err(output) => last = output,
            }
        }
        panic!("cluster create failed three times: {last}");
    }

    fn try_start() -> Result<Self, String> {
        let dir = TempDir::new("cluster");
        let nodes: Vec<RedisServer> = (0..3)
            .map(|i| {
                RedisServer::start_with(vec![
                    "--cluster-enabled".into(),
                    "yes".into(),
                    "--cluster-port".into(),
                    free_port().to_string(),
                    "--cluster-config-file".into(),
                    format!("nodes-{i}.conf"),
                    "--cluster-node-timeout".into(),
                    "2000".into(),
                    "--dir".into(),
                    dir.0.display().to_string(),
                ])
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        let mut create = vec!["--cluster", "create"];
        create.extend(addresses.iter().map(String::as_str));
        create.push("--cluster-yes");
        let output = cli(nodes[0].port, &create);
        if !output.contains("All 16384 slots covered") {
            return Err(output);
        }
        for node in &nodes {
            wait_until("cluster_state:ok", Duration::from_secs(20), || {
                node.cli(&["cluster", "info"]).contains("cluster_state:ok")
            });
        }
        Ok(RedisCluster { nodes, _dir: dir })
    }

    /// The node URLs, comma-separated (`REDIS_URL`'s cluster form).
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(RedisServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The name the sentinels monitor the master under.
pub const MASTER_NAME: &str = "authgate";

/// A master, one replica and three sentinels (quorum 2), with short
/// failure detection: `down-after-milliseconds` 500, `failover-timeout`
/// 2000.
pub struct RedisSentinels {
    pub master: RedisServer,
    pub replica: RedisServer,
    sentinels: Vec<Child>,
    pub sentinel_ports: Vec<u16>,
    _dir: TempDir,
}

impl RedisSentinels {
    pub fn start() -> Self {
        let dir = TempDir::new("sentinel");
        let master = RedisServer::start();
        let replica = RedisServer::start_with(vec![
            "--replicaof".into(),
            "127.0.0.1".into(),
            master.port.to_string(),
        ]);
        let sentinel_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let sentinels = sentinel_ports
            .iter()
            .map(|port| {
                let conf = dir.0.join(format!("sentinel-{port}.conf"));
                std::fs::write(
                    &conf,
                    format!(
                        "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                         sentinel monitor {MASTER_NAME} 127.0.0.1 {master} 2\n\
                         sentinel down-after-milliseconds {MASTER_NAME} 500\n\
                         sentinel failover-timeout {MASTER_NAME} 2000\n\
                         sentinel parallel-syncs {MASTER_NAME} 1\n",
                        dir = dir.0.display(),
                        master = master.port,
                    ),
                )
                .unwrap();
                let child = spawn(&[conf.display().to_string(), "--sentinel".into()]);
                wait_for_port(*port);
                child
            })
            .collect();
        wait_until("the replica's link", Duration::from_secs(20), || {
            replica
                .cli(&["info", "replication"])
                .contains("master_link_status:up")
        });
        RedisSentinels {
            master,
            replica,
            sentinels,
            sentinel_ports,
            _dir: dir,
        }
    }

    /// `redis+sentinel://…/authgate`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinel_ports
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        format!("redis+sentinel://{}/{MASTER_NAME}", hosts.join(","))
    }

    /// Waits until every sentinel knows the replica and the two other
    /// sentinels, which a failover needs.
    pub fn wait_until_ready_for_failover(&self) {
        for port in &self.sentinel_ports {
            wait_until("sentinels to meet", Duration::from_secs(30), || {
                let others = cli(*port, &["sentinel", "sentinels", MASTER_NAME]);
                let replicas = cli(*port, &["sentinel", "replicas", MASTER_NAME]);
                others.matches("runid").count() >= 2 && replicas.contains("ip")
            });
        }
    }

    /// The port of the server the sentinels name as master now.
    pub fn current_master_port(&self) -> Option<u16> {
        let answer = cli(
            self.sentinel_ports[0],
            &["sentinel", "get-master-addr-by-name", MASTER_NAME],
        );
        answer.lines().nth(1)?.trim().parse().ok()
    }
}

impl Drop for RedisSentinels {
    fn drop(&mut self) {
        for child in &mut self.sentinels {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
