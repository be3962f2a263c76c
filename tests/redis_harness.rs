//! The Redis test harness itself (`tests/common/redis.rs`), without any
//! proxy: standalone start/stop/restart on the same port, pause/resume, a
//! Sentinel failover and a Cluster with every slot served.

mod common;

use std::time::{Duration, Instant};

use common::redis::{Cluster, RedisServer, SentinelSet, info_field, key_slot};

#[test]
fn a_server_answers_on_its_own_port_and_restarts_on_the_same_one() {
    let mut redis = RedisServer::start();
    assert_ne!(redis.port(), 6379, "never the default port");
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{}/0", redis.port()));
    assert_eq!(redis.cli(&["PING"]), "PONG");
    assert_eq!(redis.cli(&["SET", "k", "v"]), "OK");
    assert_eq!(redis.cli(&["GET", "k"]), "v");
    assert!(redis.command_calls("get") >= 1, "commandstats counts GET");
    assert_eq!(
        redis.cli(&["CONFIG", "GET", "appendonly"]),
        "appendonly\nno",
        "no persistence"
    );

    let port = redis.port();
    let pid = redis.pid().expect("running");
    redis.stop();
    assert!(!redis.is_running());
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.contains(") Z "))
                .unwrap_or(true),
        "the child is gone after stop"
    );
    assert!(
        std::net::TcpStream::connect(redis.addr()).is_err(),
        "nothing listens after stop"
    );

    redis.restart();
    assert_eq!(redis.port(), port, "same port after restart");
    assert_eq!(redis.cli(&["PING"]), "PONG");
    assert_eq!(redis.cli(&["GET", "k"]), "", "no persistence: data is gone");
}

/// A server that took the port between the probe and the bind answers
/// PING too: the start must see the PID is not its child's, and move on.
#[test]
fn a_port_taken_before_the_bind_is_given_up_and_its_server_never_passes_for_ours() {
    let squatter = RedisServer::start();
    let redis = RedisServer::start_preferring(squatter.port());
    assert_ne!(redis.port(), squatter.port());
    let pid = info_field(&redis.info("server"), "process_id");
    assert_eq!(pid, redis.pid().map(|p| p.to_string()));
}

#[test]
fn a_paused_server_answers_nothing_until_resumed() {
    let redis = RedisServer::start();
    redis.pause();
    // A connection is accepted by the kernel, but PING gets no answer.
    let mut stream = std::net::TcpStream::connect(redis.addr()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    use std::io::{Read, Write};
    stream.write_all(b"PING\r\n").expect("write");
    let mut buf = [0u8; 16];
    assert!(stream.read(&mut buf).is_err(), "a paused server answered");
    redis.resume();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let n = stream.read(&mut buf).expect("answer after resume");
    assert_eq!(&buf[..n], b"+PONG\r\n");
}

#[test]
fn dropping_a_server_kills_it() {
    let redis = RedisServer::start();
    let addr = redis.addr();
    let dir = redis.dir();
    drop(redis);
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still listening"
    );
    assert!(!dir.exists(), "temp dir removed");
}

#[test]
fn sentinel_promotes_the_replica_when_the_primary_dies() {
    let mut set = SentinelSet::start("mymaster");
    let ports: Vec<String> = set
        .sentinels
        .iter()
        .map(|s| format!("127.0.0.1:{}", s.port()))
        .collect();
    assert_eq!(
        set.url(),
        format!("redis-sentinel://{}/mymaster", ports.join(","))
    );
    assert_eq!(set.current_primary_port(), Some(set.primary.port()));
    set.primary.cli(&["HSET", "sessions:x", "user_id", "7"]);
    let replicated = common::redis::wait_until(Duration::from_secs(5), || {
        set.replica.cli(&["HGET", "sessions:x", "user_id"]) == "7"
    });
    assert!(replicated, "the replica has the primary's data");

    let started = Instant::now();
    set.kill_primary_and_wait_for_failover();
    eprintln!("failover took {:?}", started.elapsed());
    assert_eq!(set.current_primary_port(), Some(set.replica.port()));
    assert_eq!(
        info_field(&set.replica.info("replication"), "role").as_deref(),
        Some("master")
    );
    assert_eq!(set.replica.cli(&["HGET", "sessions:x", "user_id"]), "7");
    assert_eq!(set.replica.cli(&["SET", "after", "1"]), "OK", "writable");
}

#[test]
fn a_cluster_serves_every_slot_from_three_masters() {
    let cluster = Cluster::start(3);
    let hosts: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port()))
        .collect();
    assert_eq!(
        cluster.url(),
        format!("redis-cluster://{}", hosts.join(","))
    );
    for node in &cluster.nodes {
        let info = node.cli(&["CLUSTER", "INFO"]);
        assert_eq!(info_field(&info, "cluster_state").as_deref(), Some("ok"));
        assert_eq!(
            info_field(&info, "cluster_slots_assigned").as_deref(),
            Some("16384")
        );
    }
    for i in 0..30 {
        let key = format!("sessions:id-{i}");
        assert_eq!(cluster.cli_cluster(&["SET", &key, "v"]), "OK");
        assert_eq!(cluster.cli_cluster(&["GET", &key]), "v");
    }
    for node in &cluster.nodes {
        let keys: u64 = node.cli(&["DBSIZE"]).parse().expect("DBSIZE is a number");
        assert!(keys > 0, "30 keys spread over every master");
    }
}

#[test]
fn a_cluster_with_replicas_has_one_in_sync_replica_per_master_and_key_slot_agrees() {
    let cluster = Cluster::start_with_replicas(3);
    for master in 0..3 {
        let replica = cluster.replica_of(master).expect("a replica");
        assert_eq!(replica, master + 3, "replica i follows master i");
        let info = cluster.nodes[replica].info("replication");
        assert_eq!(
            info_field(&info, "master_link_status").as_deref(),
            Some("up")
        );
    }
    // The tests pick session ids by slot with `key_slot`: it must agree
    // with the server's own CLUSTER KEYSLOT, hash tags included.
    for key in [
        "sessions:a",
        "sessions:mig17",
        "{user1000}.following",
        "a{}b",
        "x{y}z{w}",
    ] {
        let slot: u16 = cluster.nodes[0]
            .cli(&["CLUSTER", "KEYSLOT", key])
            .parse()
            .expect("a slot number");
        assert_eq!(key_slot(key), slot, "{key}");
    }
    let owner = cluster.owner(key_slot("sessions:a"));
    assert!(owner < 3, "a master owns every slot");
}
