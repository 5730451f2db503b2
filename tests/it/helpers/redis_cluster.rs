//! A real Redis Cluster on loopback for the tests: 3 masters and 3 replicas
//! (`redis-server --cluster-enabled yes`, joined by `redis-cli --cluster create`), shared by
//! every test in the binary and killed with it.

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
        let ports: Vec<u16> = (0..6).map(|_| free_port()).collect();
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
