//! Real Redis topologies on loopback for the tests: a Redis Cluster of 3 masters and 3
//! replicas (`redis-server --cluster-enabled yes`, joined by `redis-cli --cluster create`),
//! shared by every test in the binary, and a Sentinel setup (master, replica, three
//! sentinels). Their processes die with the test binary.

use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{free_port, redis_answers, spawn_shared};

pub struct RedisCluster {
    pub ports: Vec<u16>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    /// A cluster of its own (for a test that breaks it); its nodes die with the test binary.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<u16> = (0..6).map(|_| cluster_port()).collect();
        for p in &ports {
            let node_dir = dir.path().join(p.to_string());
            std::fs::create_dir_all(&node_dir).unwrap();
            spawn_shared(
                &format!(
                    "cd {} && redis-server --port {p} --bind 127.0.0.1 --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 --save '' --appendonly no --loglevel warning",
                    node_dir.display()
                ),
                &[],
            );
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ports.iter().all(|p| redis_answers(*p)) {
            assert!(Instant::now() < deadline, "cluster nodes did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(created.success(), "redis-cli --cluster create failed");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ports.iter().all(|p| cluster_ok(*p)) {
            assert!(Instant::now() < deadline, "the cluster did not become ok");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { ports, _dir: dir }
    }

    /// Stops one master (not the seed node) as a crash would look to the cluster: its
    /// replica is promoted after the node timeout (2 s). Returns its port.
    pub fn stop_a_master(&self) -> u16 {
        let nodes = Command::new("redis-cli")
            .args(["-p", &self.ports[0].to_string(), "cluster", "nodes"])
            .output()
            .unwrap();
        let port = String::from_utf8_lossy(&nodes.stdout)
            .lines()
            .filter(|l| {
                l.split_whitespace()
                    .nth(2)
                    .is_some_and(|f| f.contains("master"))
            })
            .filter_map(|l| {
                let addr = l.split_whitespace().nth(1)?;
                addr.split('@')
                    .next()?
                    .rsplit(':')
                    .next()?
                    .parse::<u16>()
                    .ok()
            })
            .find(|p| *p != self.ports[0])
            .expect("a master other than the seed");
        let _ = Command::new("redis-cli")
            .args(["-p", &port.to_string(), "shutdown", "nosave"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        port
    }

    /// A seed URL: one node; the client discovers the rest.
    pub fn seed(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.ports[0])
    }

    /// The port of the master serving `key`'s hash slot.
    pub fn master_of(&self, key: &str) -> u16 {
        let cli = |args: &[&str]| {
            let out = Command::new("redis-cli")
                .args(["-p", &self.ports[0].to_string()])
                .args(args)
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let slot: u16 = cli(&["cluster", "keyslot", key]).trim().parse().unwrap();
        cli(&["cluster", "nodes"])
            .lines()
            .filter(|l| {
                l.split_whitespace()
                    .nth(2)
                    .is_some_and(|f| f.contains("master"))
            })
            .find_map(|l| {
                let fields: Vec<&str> = l.split_whitespace().collect();
                let port = fields[1]
                    .split('@')
                    .next()?
                    .rsplit(':')
                    .next()?
                    .parse()
                    .ok()?;
                fields[8..]
                    .iter()
                    .filter_map(|r| {
                        let (a, b) = r.split_once('-').unwrap_or((r, r));
                        Some((a.parse::<u16>().ok()?, b.parse::<u16>().ok()?))
                    })
                    .any(|(a, b)| (a..=b).contains(&slot))
                    .then_some(port)
            })
            .expect("a master serves the slot")
    }

    /// A seed URL on a node other than `port`.
    pub fn seed_other_than(&self, port: u16) -> String {
        let p = self.ports.iter().find(|p| **p != port).unwrap();
        format!("redis://127.0.0.1:{p}/")
    }

    /// Stops the node on `port` as a crash would look to the cluster.
    pub fn stop_node(&self, port: u16) {
        let _ = Command::new("redis-cli")
            .args(["-p", &port.to_string(), "shutdown", "nosave"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A free port a cluster node can use: its bus port is 10,000 higher, so it must be at
/// most 55535. Both are chosen below the kernel's ephemeral range (32768 and up), so they
/// never collide with the ports `free_port` hands to other tests running at the same time.
fn cluster_port() -> u16 {
    for _ in 0..1000 {
        let port = 10_000 + (rand::random::<u16>() % 12_000);
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port) && free(port + 10_000) {
            return port;
        }
    }
    panic!("no free port for a cluster node")
}

fn cluster_ok(port: u16) -> bool {
    Command::new("redis-cli")
        .args(["-p", &port.to_string(), "cluster", "info"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
}

/// The cluster shared by every test in the binary (tests isolate by key prefix).
pub fn shared_cluster() -> &'static RedisCluster {
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    CLUSTER.get_or_init(RedisCluster::start)
}

/// Redis Sentinel on loopback: a master, a replica and three sentinels watching them
/// (quorum 2, a master is down after 1 s). Its processes die with the test binary.
pub struct RedisSentinel {
    pub master: u16,
    pub replica: u16,
    pub sentinels: Vec<u16>,
    _dir: tempfile::TempDir,
}

impl RedisSentinel {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (master, replica) = (free_port(), free_port());
        let base = "--bind 127.0.0.1 --save '' --appendonly no --loglevel warning";
        spawn_shared(&format!("redis-server --port {master} {base}"), &[]);
        spawn_shared(
            &format!("redis-server --port {replica} {base} --replicaof 127.0.0.1 {master}"),
            &[],
        );
        let sentinels: Vec<u16> = (0..3).map(|_| free_port()).collect();
        for p in &sentinels {
            // Sentinel rewrites its config file: each gets its own, writable.
            let conf = dir.path().join(format!("sentinel-{p}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {p}\nbind 127.0.0.1\nsentinel monitor mymaster 127.0.0.1 {master} 2\nsentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 5000\nsentinel parallel-syncs mymaster 1\n"
                ),
            )
            .unwrap();
            spawn_shared(&format!("redis-server {} --sentinel", conf.display()), &[]);
        }
        // Sentinels learn of the replica from the master's INFO (every 10 s) and of each
        // other from hello messages (every 2 s): on a loaded 2-core machine this can take
        // well over 30 s (a fresh CI run hit that once).
        let deadline = Instant::now() + Duration::from_secs(90);
        while !(redis_answers(master)
            && redis_answers(replica)
            && sentinels.iter().all(|p| redis_answers(*p))
            && replica_in_sync(replica)
            && sentinels.iter().all(|p| sentinel_sees_all(*p)))
        {
            assert!(
                Instant::now() < deadline,
                "sentinel topology did not come up: master {} replica {} (in sync: {}), sentinels answering {:?}, seeing all {:?}",
                redis_answers(master),
                redis_answers(replica),
                replica_in_sync(replica),
                sentinels
                    .iter()
                    .map(|p| redis_answers(*p))
                    .collect::<Vec<_>>(),
                sentinels
                    .iter()
                    .map(|p| sentinel_sees_all(*p))
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            master,
            replica,
            sentinels,
            _dir: dir,
        }
    }

    /// `redis+sentinel://host:port,…/mymaster`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+sentinel://{}/mymaster", hosts.join(","))
    }

    /// Stops the master: the sentinels promote the replica.
    pub fn stop_master(&self) {
        let _ = Command::new("redis-cli")
            .args(["-p", &self.master.to_string(), "shutdown", "nosave"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Whether a sentinel knows the replica and the two other sentinels: before that (they
/// find each other through the master every 2 s) stopping the master would find no
/// quorum and no failover would follow.
fn sentinel_sees_all(port: u16) -> bool {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "sentinel", "master", "mymaster"])
        .output();
    let Ok(out) = out else { return false };
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    let value = |key: &str| {
        lines
            .iter()
            .position(|l| *l == key)
            .and_then(|i| lines.get(i + 1))
            .map(|v| v.trim().to_owned())
    };
    value("num-other-sentinels").as_deref() == Some("2")
        && value("num-slaves").as_deref() == Some("1")
}

fn replica_in_sync(port: u16) -> bool {
    Command::new("redis-cli")
        .args(["-p", &port.to_string(), "info", "replication"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("master_link_status:up"))
}
