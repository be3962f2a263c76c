//! Real Redis for the tests: `redis-server` children on ports picked free
//! just before the start, each in a private temp directory with its log,
//! without persistence, and killed by PID on drop. Never port 6379, never a
//! server the test did not start: a start counts only once the server on
//! the port reports the child's PID, and a port taken between the probe
//! and the bind (redis-server cannot bind port 0 and say which port it
//! got) is given up for another.
//!
//! - [`RedisServer`]: one standalone server (or a node with extra arguments);
//!   stop/restart on the same port, pause/resume with SIGSTOP/SIGCONT.
//! - [`SentinelSet`]: a primary, a replica and three sentinels.
//! - [`Cluster`]: N masters (and replicas) joined by `CLUSTER MEET`.
//!
//! Every call here blocks the calling thread (it runs `redis-cli`); tests
//! that also drive an in-process proxy while waiting here should use a
//! multi-threaded runtime.

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::process::TempDir;

/// How long a `redis-cli` invocation may take before it is killed (a paused
/// server would otherwise hang it forever).
const CLI_LIMIT: Duration = Duration::from_secs(10);

/// A port that was free a moment ago on 127.0.0.1 (bound on 0, read,
/// released). Never 6379.
pub fn free_port() -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        if port != 6379 && port != 26379 {
            return port;
        }
    }
}

/// Polls `condition` every 20 ms until it holds or `limit` passes (blocking).
pub fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How long a start-up probe may wait for an answer: what took the port
/// may accept and never answer, and the probe is repeated anyway.
const PROBE_LIMIT: Duration = Duration::from_secs(1);

/// Runs `redis-cli` with `args`; its trimmed stdout, or `None` if it failed
/// to run or did not finish within [`CLI_LIMIT`].
fn run_cli(args: &[String]) -> Option<String> {
    run_cli_within(args, CLI_LIMIT)
}

/// [`run_cli`], killed after `limit`.
fn run_cli_within(args: &[String], limit: Duration) -> Option<String> {
    let mut child = Command::new("redis-cli")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn redis-cli (is it installed?)");
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait().expect("try_wait redis-cli") {
            Some(_) => break,
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("piped stdout")
        .read_to_string(&mut out)
        .ok()?;
    Some(out.trim().to_owned())
}

/// One field (`name:value` line) of `INFO` text.
pub fn info_field(info: &str, name: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':'))
        .map(str::to_owned)
}

/// What a child is: a data node, or a sentinel with its config text.
enum Role {
    Server { extra: Vec<String> },
    Sentinel { conf: String },
}

/// How many ports a start tries before it gives up.
const PORT_ATTEMPTS: usize = 5;

/// How one attempt to start a child went.
enum Start {
    /// The child answers on its port.
    Up,
    /// Its port (or cluster bus port) was taken: another may do.
    PortTaken,
    /// Anything else; the log says why.
    Failed,
}

/// One `redis-server` child on a fixed port.
pub struct RedisServer {
    port: u16,
    /// The cluster bus port, for a node started with `{bus_port}`.
    bus_port: Option<u16>,
    role: Role,
    child: Option<Child>,
    dir: TempDir,
}

impl RedisServer {
    /// A standalone server on a free port, answering PING.
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// A server with extra command-line arguments; `{port}` in an argument
    /// is replaced by the server's port (e.g. `nodes-{port}.conf`), and
    /// `{bus_port}` by a second free port, picked anew with the port.
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        RedisServer::start_role(|_| Role::Server {
            extra: extra.clone(),
        })
    }

    /// A sentinel whose config is `conf(port)`.
    fn start_sentinel(conf: impl Fn(u16) -> String) -> RedisServer {
        RedisServer::start_role(|port| Role::Sentinel { conf: conf(port) })
    }

    fn start_role(role: impl Fn(u16) -> Role) -> RedisServer {
        RedisServer::start_on(free_port, role)
    }

    /// Starts on the port `next_port` gives, and on the next one it gives
    /// whenever the port was lost to another process (any process: another
    /// test's server, a listener) between the probe and the bind.
    fn start_on(mut next_port: impl FnMut() -> u16, role: impl Fn(u16) -> Role) -> RedisServer {
        let mut taken = Vec::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = next_port();
            let role = role(port);
            let bus_port = match &role {
                Role::Server { extra } if extra.iter().any(|a| a.contains("{bus_port}")) => {
                    Some(free_port())
                }
                _ => None,
            };
            let mut server = RedisServer {
                port,
                bus_port,
                role,
                child: None,
                dir: TempDir::new(),
            };
            match server.spawn_and_wait(Duration::from_secs(10)) {
                Start::Up => return server,
                Start::PortTaken => taken.push(port),
                Start::Failed => panic!(
                    "redis-server on :{port} did not start; log:\n{}",
                    server.log()
                ),
            }
        }
        panic!("redis-server found every port it tried taken: {taken:?}");
    }

    /// A server on `first` if it can have it, else on a free port: what a
    /// test of the port-taken path needs.
    pub fn start_preferring(first: u16) -> RedisServer {
        let mut first = Some(first);
        RedisServer::start_on(
            move || first.take().unwrap_or_else(free_port),
            |_| Role::Server { extra: Vec::new() },
        )
    }

    /// Spawns the child and waits (bounded) until it answers as itself. The
    /// child is reaped unless it came up.
    fn spawn_and_wait(&mut self, limit: Duration) -> Start {
        let log_path = self.dir.path().join("redis.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("open redis log");
        let log_err = log.try_clone().expect("clone log handle");
        let mut command = Command::new("redis-server");
        match &self.role {
            Role::Server { extra } => {
                let port = self.port.to_string();
                let bus_port = self.bus_port.map(|p| p.to_string()).unwrap_or_default();
                command
                    .args(["--port", &port, "--bind", "127.0.0.1"])
                    .args(["--save", "", "--appendonly", "no"])
                    .arg("--dir")
                    .arg(self.dir.path())
                    .args(["--daemonize", "no"])
                    .args(
                        extra
                            .iter()
                            .map(|a| a.replace("{port}", &port).replace("{bus_port}", &bus_port)),
                    );
            }
            Role::Sentinel { conf } => {
                // A sentinel rewrites its config file: write it once, keep
                // what it learnt across a restart.
                let path = self.dir.path().join("sentinel.conf");
                if !path.exists() {
                    let text = format!("{conf}dir {}\n", self.dir.path().display());
                    std::fs::write(&path, text).expect("write sentinel.conf");
                }
                command.arg(&path).arg("--sentinel");
            }
        }
        let child = command
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .expect("spawn redis-server (is it installed?)");
        let pid = child.id();
        self.child = Some(child);
        let deadline = Instant::now() + limit;
        loop {
            // Whatever answers must be our child: a PONG alone could come
            // from a server that took the port first.
            if self.answering_pid() == Some(pid) {
                return Start::Up;
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().expect("try_wait redis-server"))
                .is_some();
            if exited || Instant::now() >= deadline {
                self.kill();
                // "Could not create server TCP listening socket
                // 127.0.0.1:P: bind: Address already in use", for the
                // client port and the cluster bus alike.
                return if exited && self.log().contains("Address already in use") {
                    Start::PortTaken
                } else {
                    Start::Failed
                };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The `process_id` of the server answering on the port, if any does.
    fn answering_pid(&self) -> Option<u32> {
        let args = ["-p", &self.port.to_string(), "INFO", "server"].map(str::to_owned);
        let info = run_cli_within(&args, PROBE_LIMIT)?;
        info_field(&info, "process_id")?.trim().parse().ok()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGKILL works on a stopped (SIGSTOP) process too.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster bus port, for a node started with `{bus_port}`.
    pub fn bus_port(&self) -> Option<u16> {
        self.bus_port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `redis://127.0.0.1:P/0`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The child's PID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The server's log so far (all restarts).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// `redis-cli -p P ARGS...`: trimmed stdout. Panics if redis-cli does not
    /// finish within 10 s (e.g. the server is paused).
    pub fn cli(&self, args: &[&str]) -> String {
        let mut all = vec!["-p".to_owned(), self.port.to_string()];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        run_cli(&all).unwrap_or_else(|| panic!("redis-cli {args:?} on :{} hung", self.port))
    }

    /// `INFO section` as text.
    pub fn info(&self, section: &str) -> String {
        self.cli(&["INFO", section])
    }

    /// How many times `command` (lower-case, e.g. `"hgetall"`) ran since the
    /// start, from `INFO commandstats` (`cmdstat_<command>:calls=N,...`).
    pub fn command_calls(&self, command: &str) -> u64 {
        let info = self.info("commandstats");
        info_field(&info, &format!("cmdstat_{command}"))
            .and_then(|v| {
                v.split(',')
                    .find_map(|kv| kv.strip_prefix("calls="))
                    .and_then(|n| n.parse().ok())
            })
            .unwrap_or(0)
    }

    /// Kills the child (SIGKILL) and reaps it. The port and the directory
    /// are kept for [`RedisServer::restart`].
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Starts again on the same port (retrying the bind for a few seconds).
    /// Without persistence, the data is gone.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Start::Up = self.spawn_and_wait(Duration::from_secs(5)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "redis-server did not restart on port {}; log:\n{}",
            self.port,
            self.log()
        );
    }

    /// SIGSTOP: the server keeps its sockets but answers nothing.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// SIGCONT after [`RedisServer::pause`].
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.pid().expect("redis-server is running");
        let status = Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .expect("run kill(1)");
        assert!(status.success(), "kill -{signal} {pid}: {status}");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A primary, one replica and three sentinels monitoring it as `master`.
pub struct SentinelSet {
    pub master: String,
    pub primary: RedisServer,
    pub replica: RedisServer,
    pub sentinels: Vec<RedisServer>,
}

impl SentinelSet {
    /// Starts everything and returns once the replica is in sync and every
    /// sentinel knows the replica and the two other sentinels (so a
    /// failover can be authorized).
    pub fn start(master: &str) -> SentinelSet {
        let primary = RedisServer::start();
        let primary_port = primary.port().to_string();
        let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &primary_port]);
        let synced = wait_until(Duration::from_secs(15), || {
            info_field(&replica.info("replication"), "master_link_status").as_deref() == Some("up")
        });
        assert!(synced, "replica never in sync:\n{}", replica.log());
        let sentinels: Vec<RedisServer> = (0..3)
            .map(|_| {
                RedisServer::start_sentinel(|port| {
                    format!(
                        "port {port}\nbind 127.0.0.1\ndaemonize no\n\
                         sentinel monitor {master} 127.0.0.1 {primary_port} 2\n\
                         sentinel down-after-milliseconds {master} 1000\n\
                         sentinel failover-timeout {master} 5000\n\
                         sentinel parallel-syncs {master} 1\n"
                    )
                })
            })
            .collect();
        let set = SentinelSet {
            master: master.to_owned(),
            primary,
            replica,
            sentinels,
        };
        let acquainted = wait_until(Duration::from_secs(30), || {
            set.sentinels.iter().all(|s| {
                let state = set.sentinel_master_state(s);
                state.get("num-slaves").map(String::as_str) == Some("1")
                    && state.get("num-other-sentinels").map(String::as_str) == Some("2")
            })
        });
        assert!(
            acquainted,
            "sentinels never saw the replica and each other: {:?}",
            set.sentinels
                .iter()
                .map(|s| set.sentinel_master_state(s))
                .collect::<Vec<_>>()
        );
        set
    }

    /// `SENTINEL MASTER name` as a map.
    fn sentinel_master_state(
        &self,
        sentinel: &RedisServer,
    ) -> std::collections::HashMap<String, String> {
        let text = sentinel.cli(&["SENTINEL", "MASTER", &self.master]);
        let lines: Vec<&str> = text.lines().collect();
        lines
            .chunks(2)
            .filter(|kv| kv.len() == 2)
            .map(|kv| (kv[0].to_owned(), kv[1].to_owned()))
            .collect()
    }

    /// `redis-sentinel://127.0.0.1:S1,127.0.0.1:S2,127.0.0.1:S3/master`
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port()))
            .collect();
        format!("redis-sentinel://{}/{}", hosts.join(","), self.master)
    }

    /// The address the first sentinel that answers names as the primary.
    pub fn current_primary_port(&self) -> Option<u16> {
        self.sentinels.iter().find_map(|s| {
            let text = run_cli(&[
                "-p".to_owned(),
                s.port().to_string(),
                "SENTINEL".to_owned(),
                "GET-MASTER-ADDR-BY-NAME".to_owned(),
                self.master.clone(),
            ])?;
            text.lines().nth(1)?.trim().parse().ok()
        })
    }

    /// Kills the primary and waits (at most 30 s) until a sentinel names the
    /// replica as the primary and the replica says it is a master.
    pub fn kill_primary_and_wait_for_failover(&mut self) {
        self.primary.stop();
        let replica_port = self.replica.port();
        let promoted = wait_until(Duration::from_secs(30), || {
            self.current_primary_port() == Some(replica_port)
                && info_field(&self.replica.info("replication"), "role").as_deref()
                    == Some("master")
        });
        assert!(
            promoted,
            "no failover to :{replica_port} within 30 s; sentinel logs:\n{}",
            self.sentinels
                .iter()
                .map(RedisServer::log)
                .collect::<Vec<_>>()
                .join("\n---\n")
        );
    }
}

/// A Redis Cluster: masters holding every slot, optionally a replica each.
pub struct Cluster {
    /// The masters first (`0..masters`), then replica `i` of master `i`.
    pub nodes: Vec<RedisServer>,
    masters: usize,
}

impl Cluster {
    /// `masters` nodes (at least 3), each given an equal share of the 16384
    /// slots; see [`Cluster::start_with_replicas`].
    pub fn start(masters: usize) -> Cluster {
        Cluster::build(masters, false)
    }

    /// `masters` masters and one replica each, in sync; returns once every
    /// node knows every other and reports `cluster_state:ok`.
    pub fn start_with_replicas(masters: usize) -> Cluster {
        Cluster::build(masters, true)
    }

    /// Built by hand rather than with `redis-cli --cluster create`: that
    /// tool's own join wait has no bound we control, and on a loaded CI
    /// machine it outlived the CLI time limit. Each node's cluster bus gets
    /// its own free port, because the default (port + 10000) can be taken
    /// or, above 55535, does not exist.
    fn build(masters: usize, replicas: bool) -> Cluster {
        assert!(masters >= 3, "a cluster needs at least 3 masters");
        let count = if replicas { masters * 2 } else { masters };
        let nodes: Vec<RedisServer> = (0..count)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes-{port}.conf",
                    "--cluster-node-timeout",
                    "2000",
                    "--cluster-port",
                    "{bus_port}",
                ])
            })
            .collect();
        const SLOTS: usize = 16384;
        for (i, node) in nodes.iter().take(masters).enumerate() {
            let first = i * SLOTS / masters;
            let last = (i + 1) * SLOTS / masters - 1;
            let reply = node.cli(&[
                "CLUSTER",
                "ADDSLOTSRANGE",
                &first.to_string(),
                &last.to_string(),
            ]);
            assert_eq!(reply, "OK", "CLUSTER ADDSLOTSRANGE on :{}", node.port());
        }
        let seed = &nodes[0];
        let seed_bus = seed
            .bus_port()
            .expect("a cluster node has a bus port")
            .to_string();
        for node in &nodes[1..] {
            let reply = node.cli(&[
                "CLUSTER",
                "MEET",
                "127.0.0.1",
                &seed.port().to_string(),
                &seed_bus,
            ]);
            assert_eq!(reply, "OK", "CLUSTER MEET from :{}", node.port());
        }
        let cluster = Cluster { nodes, masters };
        let known = count.to_string();
        let met = wait_until(Duration::from_secs(60), || {
            cluster.nodes.iter().all(|n| {
                let info = n.cli(&["CLUSTER", "INFO"]);
                info_field(&info, "cluster_known_nodes").as_deref() == Some(&known)
            })
        });
        assert!(met, "the nodes never all met:\n{}", cluster.describe());
        if replicas {
            for i in 0..masters {
                let id = cluster.node_id(i);
                let replica = &cluster.nodes[masters + i];
                // The replica must have learnt the master's id by gossip.
                let ok = wait_until(Duration::from_secs(20), || {
                    replica.cli(&["CLUSTER", "REPLICATE", &id]) == "OK"
                });
                assert!(ok, "CLUSTER REPLICATE on :{}", replica.port());
            }
        }
        assert!(
            cluster.wait_ok(Duration::from_secs(60)),
            "cluster never reached cluster_state:ok within 60 s:\n{}",
            cluster.describe()
        );
        if replicas {
            for i in 0..masters {
                let replica = &cluster.nodes[masters + i];
                let synced = wait_until(Duration::from_secs(30), || {
                    let info = replica.info("replication");
                    info_field(&info, "master_link_status").as_deref() == Some("up")
                });
                assert!(synced, "replica :{} never in sync", replica.port());
            }
        }
        cluster
    }

    fn describe(&self) -> String {
        self.live()
            .map(|n| format!(":{}\n{}", n.port(), n.cli(&["CLUSTER", "NODES"])))
            .collect::<Vec<_>>()
            .join("\n---\n")
    }

    /// The nodes still running.
    pub fn live(&self) -> impl Iterator<Item = &RedisServer> {
        self.nodes.iter().filter(|n| n.is_running())
    }

    /// True once every running node reports `cluster_state:ok` and they all
    /// agree on which node owns each slot.
    pub fn wait_ok(&self, limit: Duration) -> bool {
        wait_until(limit, || {
            let mut maps = Vec::new();
            for node in self.live() {
                let info = node.cli(&["CLUSTER", "INFO"]);
                if info_field(&info, "cluster_state").as_deref() != Some("ok") {
                    return false;
                }
                maps.push(slot_map(&node.cli(&["CLUSTER", "NODES"])));
            }
            maps.windows(2).all(|w| w[0] == w[1])
        })
    }

    /// `CLUSTER MYID` of node `i`.
    pub fn node_id(&self, i: usize) -> String {
        self.nodes[i].cli(&["CLUSTER", "MYID"])
    }

    /// The index of the node that owns `slot`, as the running nodes see it.
    pub fn owner(&self, slot: u16) -> usize {
        let node = self.live().next().expect("a running node");
        let nodes = node.cli(&["CLUSTER", "NODES"]);
        let owner = slot_map(&nodes)
            .into_iter()
            .find(|(first, last, _)| (*first..=*last).contains(&slot))
            .map(|(_, _, port)| port)
            .unwrap_or_else(|| panic!("nobody owns slot {slot}:\n{nodes}"));
        self.nodes
            .iter()
            .position(|n| n.port() == owner)
            .expect("the owner is one of ours")
    }

    /// The replica that follows master `i` now (after a failover the old
    /// master may be it), if any runs.
    pub fn replica_of(&self, i: usize) -> Option<usize> {
        let id = self.node_id(i);
        let node = self.live().next().expect("a running node");
        let nodes = node.cli(&["CLUSTER", "NODES"]);
        nodes.lines().find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.get(3) != Some(&id.as_str()) || !fields[2].contains("slave") {
                return None;
            }
            let port: u16 = fields[1].split(['@', ':']).nth(1)?.parse().ok()?;
            self.nodes
                .iter()
                .position(|n| n.port() == port && n.is_running())
        })
    }

    /// `CLUSTER FAILOVER` on `replica`; returns once it is a master and the
    /// cluster agrees.
    pub fn manual_failover(&self, replica: usize) {
        let node = &self.nodes[replica];
        assert_eq!(node.cli(&["CLUSTER", "FAILOVER"]), "OK");
        let promoted = wait_until(Duration::from_secs(30), || {
            node.cli(&["ROLE"]).lines().next() == Some("master")
        });
        assert!(promoted, ":{} never became master", node.port());
    }

    /// SIGKILLs node `i` (a replica: nothing is promoted).
    pub fn stop_node(&mut self, i: usize) {
        self.nodes[i].stop();
    }

    /// SIGKILLs node `i` and returns once `replica` has been promoted.
    pub fn kill_and_wait_for_promotion(&mut self, i: usize, replica: usize) {
        self.nodes[i].stop();
        let node = &self.nodes[replica];
        let promoted = wait_until(Duration::from_secs(60), || {
            node.cli(&["ROLE"]).lines().next() == Some("master")
        });
        assert!(
            promoted,
            ":{} never promoted:\n{}",
            node.port(),
            self.describe()
        );
    }

    /// Starts moving `slot` from node `from` to node `to`: `IMPORTING` on
    /// the destination, then `MIGRATING` on the source (the order
    /// `redis-cli --cluster reshard` uses).
    pub fn begin_migration(&self, slot: u16, from: usize, to: usize) {
        let slot = slot.to_string();
        let (from_id, to_id) = (self.node_id(from), self.node_id(to));
        let to_node = &self.nodes[to];
        let from_node = &self.nodes[from];
        assert_eq!(
            to_node.cli(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id]),
            "OK"
        );
        assert_eq!(
            from_node.cli(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id]),
            "OK"
        );
    }

    /// `MIGRATE`s `keys` from node `from` to node `to`.
    pub fn migrate_keys(&self, from: usize, to: usize, keys: &[&str]) {
        let port = self.nodes[to].port().to_string();
        let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
        args.extend_from_slice(keys);
        assert_eq!(self.nodes[from].cli(&args), "OK", "MIGRATE {keys:?}");
    }

    /// Ends a migration: `slot` belongs to node `to`, told to every master.
    pub fn finish_migration(&self, slot: u16, to: usize) {
        let slot = slot.to_string();
        let to_id = self.node_id(to);
        for node in self.live() {
            if node.cli(&["ROLE"]).lines().next() == Some("master") {
                let reply = node.cli(&["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]);
                assert_eq!(reply, "OK", "SETSLOT NODE on :{}", node.port());
            }
        }
    }

    /// `redis-cluster://` naming the masters the cluster started with.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.nodes[..self.masters]
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        format!("redis-cluster://{}", hosts.join(","))
    }

    /// `redis-cli -c -p P ARGS...` on a running node (follows MOVED and
    /// ASK redirects): trimmed stdout.
    pub fn cli_cluster(&self, args: &[&str]) -> String {
        let node = self.live().next().expect("a running node");
        let mut all = vec!["-c".to_owned(), "-p".to_owned(), node.port().to_string()];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        run_cli(&all).unwrap_or_else(|| panic!("redis-cli -c {args:?} hung"))
    }
}

/// `(first, last, port)` of every slot range in `CLUSTER NODES` text,
/// sorted; migration markers (`[slot->-id]`) are left out.
fn slot_map(nodes: &str) -> Vec<(u16, u16, u16)> {
    let mut map = Vec::new();
    for line in nodes.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(port) = fields
            .get(1)
            .and_then(|a| a.split(['@', ':']).nth(1))
            .and_then(|p| p.parse::<u16>().ok())
        else {
            continue;
        };
        for range in fields.iter().skip(8).filter(|r| !r.starts_with('[')) {
            let (first, last) = range.split_once('-').unwrap_or((range, range));
            if let (Ok(first), Ok(last)) = (first.parse(), last.parse()) {
                map.push((first, last, port));
            }
        }
    }
    map.sort_unstable();
    map
}

/// The cluster slot of `key` (CRC16/XMODEM of the key, or of its `{tag}`,
/// modulo 16384), as the Cluster specification defines it.
pub fn key_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let hashed = match key.find('{') {
        Some(open) => match key[open + 1..].find('}') {
            Some(len) if len > 0 => &bytes[open + 1..open + 1 + len],
            _ => bytes,
        },
        None => bytes,
    };
    let mut crc: u16 = 0;
    for &byte in hashed {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}
