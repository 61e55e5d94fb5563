//! Root integration tests: two or three nodes and their pods as network namespaces made by
//! the test (see `lab.rs`), checked with real TCP round trips between namespaces.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::lab::*;
use super::{host_veth_name, Backend};

const LIMIT: Duration = Duration::from_secs(60);

fn routes(node: &Node) -> String {
    ip(&["-n", &node.ns_name, "route", "show", "table", "main"])
}

#[test]
fn vxlan_cluster_end_to_end() {
    if !lab_available() {
        return;
    }
    with_lab("vx", LIMIT, |lab| {
        let root_fwd = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
        let mut nodes = build_nodes(&lab, 3, Backend::Vxlan);
        mesh(&nodes);
        assert_eq!(
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
            root_fwd,
            "the root namespace must not be touched"
        );

        // Node setup: bridge, vxlan device, MTU, forwarding, unreachable guards.
        let n1 = &nodes[0];
        let r = routes(n1);
        assert!(r.contains("unreachable 10.42.0.0/16"), "routes: {r}");
        assert!(r.contains("10.43.0.0/16 dev skiff0"), "routes: {r}");
        assert!(
            r.contains("10.42.2.0/24 via 10.42.2.0 dev skiff.1 proto 83 onlink"),
            "routes: {r}"
        );
        assert!(
            r.contains("10.42.3.0/24 via 10.42.3.0 dev skiff.1 proto 83 onlink"),
            "routes: {r}"
        );
        assert!(
            !r.contains("10.42.1.0/24 via"),
            "must not route to itself: {r}"
        );
        let vx = ip(&["-n", &n1.ns_name, "-d", "link", "show", "skiff.1"]);
        assert!(vx.contains("mtu 1450"), "{vx}");
        assert!(
            vx.contains("vxlan id 1") && vx.contains("dstport 8472"),
            "{vx}"
        );
        assert!(
            vx.contains("0e:73:c0:a8:4d:0b"),
            "vtep mac derived from node ip: {vx}"
        );
        let br = ip(&["-n", &n1.ns_name, "addr", "show", "skiff0"]);
        assert!(br.contains("inet 10.42.1.1/24"), "{br}");
        let fwd = try_cmd(
            "ip",
            &[
                "netns",
                "exec",
                &n1.ns_name,
                "cat",
                "/proc/sys/net/ipv4/ip_forward",
            ],
        )
        .1;
        assert_eq!(fwd.trim(), "1");
        let fdb = try_cmd(
            "bridge",
            &["-n", &n1.ns_name, "fdb", "show", "dev", "skiff.1"],
        )
        .1;
        assert!(fdb.contains("0e:73:c0:a8:4d:0c dst 192.168.77.12"), "{fdb}");
        let neigh = ip(&["-n", &n1.ns_name, "neigh", "show", "dev", "skiff.1"]);
        assert!(
            neigh.contains("10.42.2.0 lladdr 0e:73:c0:a8:4d:0c PERMANENT"),
            "{neigh}"
        );

        // Pods.
        let (a, a_ip) = add_pod(&lab, &nodes[0], "a");
        let (b, b_ip) = add_pod(&lab, &nodes[0], "b");
        let (c, c_ip) = add_pod(&lab, &nodes[1], "c");
        let (d, d_ip) = add_pod(&lab, &nodes[2], "d");
        assert_eq!(a_ip, Ipv4Addr::new(10, 42, 1, 2));
        assert_eq!(b_ip, Ipv4Addr::new(10, 42, 1, 3));
        assert_eq!(c_ip, Ipv4Addr::new(10, 42, 2, 2));
        let eth0 = ip(&["-n", &lab.ns_name("a"), "-d", "addr", "show", "eth0"]);
        assert!(
            eth0.contains("mtu 1450") && eth0.contains("inet 10.42.1.2/24"),
            "{eth0}"
        );
        let pod_routes = ip(&["-n", &lab.ns_name("a"), "route"]);
        assert!(
            pod_routes.contains("default via 10.42.1.1 dev eth0"),
            "{pod_routes}"
        );

        tcp_check(&a, &nodes[0].ns, nodes[0].net().gateway()).expect("pod -> gateway");
        // The bridge keeps its own fixed address with ports attached (it would otherwise take
        // the lowest port's and change it as pods come and go).
        let br = ip(&["-n", &nodes[0].ns_name, "link", "show", "skiff0"]);
        assert!(br.contains("link/ether 0a:58:0a:2a:01:01"), "{br}");
        let before = ip(&["-n", &lab.ns_name("a"), "neigh", "show", "10.42.1.1"]);
        assert!(before.contains("0a:58:0a:2a:01:01"), "pod a's gateway entry: {before}");
        tcp_check(&a, &b, b_ip).expect("pod -> pod, same node");
        tcp_check(&a, &c, c_ip).expect("pod -> pod across nodes (vxlan)");
        tcp_check(&d, &a, a_ip).expect("pod -> pod across nodes, reverse direction");
        tcp_check(&c, &d, d_ip).expect("pod -> pod, node 2 -> node 3");
        tcp_check(&nodes[1].ns, &a, a_ip).expect("node -> remote pod");

        // Cluster addresses without a route fail fast instead of leaking out.
        let (err, took) = connect_error(&a, Ipv4Addr::new(10, 42, 200, 9));
        let err = err.expect("connect to an unrouted cluster address must fail");
        assert!(took < Duration::from_millis(1500), "took {took:?}: {err}");
        assert_eq!(err.raw_os_error(), Some(nix::libc::EHOSTUNREACH), "{err}");

        // Idempotent attach: same address, still one veth, still works.
        assert_eq!(nodes[0].net().attach("a", &a).unwrap(), a_ip);
        assert_eq!(nodes[0].net().address_of("a"), Some(a_ip));
        tcp_check(&a, &c, c_ip).expect("after re-attach");

        // Agent restart on node 1: same addresses, connectivity kept, new pod gets a new one.
        nodes[0].restart();
        mesh(&nodes);
        assert_eq!(nodes[0].net().address_of("a"), Some(a_ip));
        assert_eq!(nodes[0].net().attach("a", &a).unwrap(), a_ip);
        let (e, e_ip) = add_pod(&lab, &nodes[0], "e");
        assert!(e_ip != a_ip && e_ip != b_ip, "{e_ip}");
        tcp_check(&e, &c, c_ip).expect("new pod after restart");
        let br = ip(&["-n", &nodes[0].ns_name, "link", "show", "skiff0"]);
        assert!(br.contains("link/ether 0a:58:0a:2a:01:01"), "after a restart and a new pod: {br}");
        tcp_check(&a, &nodes[0].ns, nodes[0].net().gateway()).expect("old pod -> gateway after a new pod");
        tcp_check(&c, &a, a_ip).expect("old pod after restart");

        // Removing node 3 from node 1's peers removes its route, neighbour and fdb entry.
        nodes[0].net().set_peers(&[nodes[1].peer()]).unwrap();
        let r = routes(&nodes[0]);
        assert!(!r.contains("10.42.3.0/24"), "{r}");
        assert!(r.contains("10.42.2.0/24 via 10.42.2.0"), "{r}");
        let fdb = try_cmd(
            "bridge",
            &["-n", &nodes[0].ns_name, "fdb", "show", "dev", "skiff.1"],
        )
        .1;
        assert!(!fdb.contains("192.168.77.13"), "{fdb}");
        let neigh = ip(&["-n", &nodes[0].ns_name, "neigh", "show", "dev", "skiff.1"]);
        assert!(!neigh.contains("10.42.3.0"), "{neigh}");
        let (err, _) = connect_error(&a, d_ip);
        assert!(
            err.is_some(),
            "node 3's pod must now be unreachable from node 1"
        );
        tcp_check(&a, &c, c_ip).expect("remaining peer still reachable");

        // Teardown removes what new() created.
        nodes[2].net().teardown().unwrap();
        let r = routes(&nodes[2]);
        assert!(!r.contains("unreachable") && !r.contains("proto 83"), "{r}");
        let links = ip(&["-n", &nodes[2].ns_name, "link"]);
        assert!(
            !links.contains("skiff0") && !links.contains("skiff.1"),
            "{links}"
        );
    });
}

#[test]
fn host_gw_cluster() {
    if !lab_available() {
        return;
    }
    with_lab("gw", LIMIT, |lab| {
        let nodes = build_nodes(&lab, 2, Backend::HostGw);
        mesh(&nodes);
        let r = routes(&nodes[0]);
        assert!(
            r.contains("10.42.2.0/24 via 192.168.77.12 dev uplink proto 83"),
            "{r}"
        );
        let links = ip(&["-n", &nodes[0].ns_name, "link"]);
        assert!(
            !links.contains("skiff.1"),
            "no vxlan device with host-gw: {links}"
        );
        let (a, _a_ip) = add_pod(&lab, &nodes[0], "a");
        let (b, b_ip) = add_pod(&lab, &nodes[1], "b");
        let eth0 = ip(&["-n", &lab.ns_name("a"), "link", "show", "eth0"]);
        assert!(
            eth0.contains("mtu 1500"),
            "host-gw has no encapsulation overhead: {eth0}"
        );
        tcp_check(&a, &b, b_ip).expect("pod -> pod across nodes (host-gw)");
        nodes[0].net().set_peers(&[]).unwrap();
        assert!(!routes(&nodes[0]).contains("10.42.2.0/24"));
        assert!(
            tcp_check(&a, &b, b_ip).is_err(),
            "without the peer route the pod is unreachable"
        );
    });
}

/// A bridge made by an older version (no address of its own, so the kernel may change it)
/// keeps its current address through a restart, now fixed, so running pods' gateway
/// entries stay right.
#[test]
fn an_older_bridge_keeps_its_address_and_it_is_fixed() {
    if !lab_available() {
        return;
    }
    with_lab("brup", LIMIT, |lab| {
        let mut nodes = build_nodes(&lab, 1, Backend::HostGw);
        let node = nodes[0].ns_name.clone();
        let assign_type = || try_cmd("ip", &["netns", "exec", &node, "cat", "/sys/class/net/skiff0/addr_assign_type"]).1;
        // What an older version left: a bridge whose address the kernel picked (type 1).
        ip(&["-n", &node, "link", "del", "skiff0"]);
        ip(&["-n", &node, "link", "add", "skiff0", "type", "bridge"]);
        assert_eq!(assign_type().trim(), "1", "a kernel-picked (random) address");
        let mac = || {
            let l = ip(&["-n", &node, "link", "show", "skiff0"]);
            l.split_whitespace().skip_while(|w| *w != "link/ether").nth(1).unwrap_or_default().to_string()
        };
        let before = mac();
        nodes[0].restart();
        assert_eq!(mac(), before, "the address must not change under running pods");
        assert_eq!(assign_type().trim(), "3", "the address must now be the bridge's own (set)");
        let (a, _) = add_pod(&lab, &nodes[0], "a");
        tcp_check(&a, &nodes[0].ns, nodes[0].net().gateway()).expect("pod -> gateway");
        assert_eq!(mac(), before);
    });
}

#[test]
fn detach_and_gc_release_addresses() {
    if !lab_available() {
        return;
    }
    with_lab("gc", LIMIT, |lab| {
        let mut nodes = build_nodes(&lab, 1, Backend::Vxlan);
        let (a, a_ip) = add_pod(&lab, &nodes[0], "a");
        let (_b, b_ip) = add_pod(&lab, &nodes[0], "b");
        let (_c, _c_ip) = add_pod(&lab, &nodes[0], "c");
        let node = nodes[0].ns_name.clone();

        // A failed first attach keeps no address and leaves no veth.
        let bad = std::path::Path::new("/run/netns/skiffnet-test-does-not-exist");
        let err = nodes[0].net().attach("ghost", bad).unwrap_err();
        assert!(
            err.to_string().contains("skiffnet-test-does-not-exist"),
            "{err}"
        );
        assert_eq!(nodes[0].net().address_of("ghost"), None);
        let (ok, _) = try_cmd(
            "ip",
            &["-n", &node, "link", "show", &host_veth_name("ghost")],
        );
        assert!(!ok, "no veth may remain after a failed attach");

        // detach: veth gone, address released, idempotent.
        nodes[0].net().detach("c").unwrap();
        nodes[0].net().detach("c").unwrap();
        assert_eq!(nodes[0].net().address_of("c"), None);
        let (ok, _) = try_cmd("ip", &["-n", &node, "link", "show", &host_veth_name("c")]);
        assert!(!ok, "veth of c must be gone");

        // Restart, then gc with only "a" alive.
        nodes[0].restart();
        let released = nodes[0].net().gc(&["a"]).unwrap();
        assert_eq!(released, vec!["b".to_string()]);
        assert_eq!(nodes[0].net().address_of("b"), None);
        assert_eq!(nodes[0].net().address_of("a"), Some(a_ip));
        let (ok, _) = try_cmd("ip", &["-n", &node, "link", "show", &host_veth_name("b")]);
        assert!(!ok, "veth of b must be gone");
        let (ok, _) = try_cmd("ip", &["-n", &node, "link", "show", &host_veth_name("a")]);
        assert!(ok, "veth of a must stay");
        tcp_check(&a, &nodes[0].ns, nodes[0].net().gateway()).expect("a still wired");
        assert_eq!(nodes[0].net().gc(&["a"]).unwrap(), Vec::<String>::new());

        // b's record is gone from the state dir, so its address is free again.
        let ipam_dir = nodes[0].cfg.state_dir.join("ipam");
        assert!(!ipam_dir.join(b_ip.to_string()).exists());
        assert!(ipam_dir.join(a_ip.to_string()).exists());
    });
}

/// Pods wired from several threads at once (as the agent does in a burst) each get their
/// own address and a working link, and the node's sockets are not mixed up between them.
#[test]
fn pods_attached_concurrently_are_all_wired() {
    if !lab_available() {
        return;
    }
    with_lab("par", LIMIT, |lab| {
        let nodes = build_nodes(&lab, 1, Backend::HostGw);
        let names: Vec<String> = (0..12).map(|i| format!("p{i}")).collect();
        let pods: Vec<(std::path::PathBuf, Ipv4Addr)> = std::thread::scope(|s| {
            let handles: Vec<_> = names.iter().map(|n| s.spawn(|| add_pod(&lab, &nodes[0], n))).collect();
            handles.into_iter().map(|h| h.join().expect("attach thread")).collect()
        });
        let mut ips: Vec<Ipv4Addr> = pods.iter().map(|(_, ip)| *ip).collect();
        ips.sort();
        ips.dedup();
        assert_eq!(ips.len(), names.len(), "every pod its own address: {pods:?}");
        for (name, (ns, ip)) in names.iter().zip(&pods) {
            assert_eq!(nodes[0].net().address_of(name), Some(*ip));
            tcp_check(ns, &nodes[0].ns, nodes[0].net().gateway()).unwrap_or_else(|e| panic!("{name} -> gateway: {e}"));
        }
    });
}

/// The bridge is trusted between checks, not re-read on every attach; one deleted behind the
/// agent's back is recreated (with its gateway address) by the next attach, which then works.
#[test]
fn a_bridge_deleted_behind_our_back_heals_on_the_next_attach() {
    if !lab_available() {
        return;
    }
    with_lab("heal", LIMIT, |lab| {
        let nodes = build_nodes(&lab, 1, Backend::HostGw);
        let (first, _) = add_pod(&lab, &nodes[0], "before");
        tcp_check(&first, &nodes[0].ns, nodes[0].net().gateway()).expect("first pod reaches the gateway");
        ip(&["-n", &nodes[0].ns_name, "link", "del", &nodes[0].cfg.bridge]);
        let (second, ip2) = add_pod(&lab, &nodes[0], "after");
        assert_eq!(nodes[0].net().address_of("after"), Some(ip2));
        let links = ip(&["-n", &nodes[0].ns_name, "-o", "link", "show", "type", "bridge"]);
        assert!(links.contains(&format!(" {}:", nodes[0].cfg.bridge)), "bridge recreated: {links}");
        tcp_check(&second, &nodes[0].ns, nodes[0].net().gateway()).expect("a pod attached after the deletion reaches the gateway");
    });
}
