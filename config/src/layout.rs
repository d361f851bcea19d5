//! [`Layout`]: the shape of a whole local deployment, shared by `warren dev` (one process),
//! the test harness (`warren_testkit::Deployment`, in process) and `warren loadtest
//! --deploy` (one process per member): a meta cell named `meta`, data cells `c1..cN`,
//! proxies `p1..pM`, their ports from a base port, their store directories, and which cells
//! the first partition map names. Writing that map is `warren_client::admin`'s job; this is
//! only the description, so every crate that lays out a deployment agrees on it.
//!
//! Ports, with P = the base port (0: every port is 0, i.e. picked by the system):
//!
//! | member | gRPC | admin HTTP | store |
//! |---|---|---|---|
//! | meta cell `meta` | P | P+80 | DIR/meta |
//! | data cell `ck`, k = 1..N | P+k | P+80+k | DIR/ck |
//! | proxy `pj`, j = 1..M | P+100+j | P+180+j | — |

use std::path::{Path, PathBuf};

/// The meta cell's name (it holds the partition map).
pub const META: &str = "meta";
/// Data cells of `warren dev` (and `warren loadtest --deploy dev`) unless told otherwise.
pub const DEFAULT_CELLS: u16 = 3;
/// Proxies of `warren dev` (and `warren loadtest --deploy dev`) unless told otherwise.
pub const DEFAULT_PROXIES: u16 = 2;
/// The most data cells, and the most proxies, a layout has: the ports leave room for 20 of
/// each.
pub const MAX_EACH: u16 = 20;
/// The highest base port: a layout uses ports up to P+200.
pub const MAX_BASE_PORT: u16 = u16::MAX - 200;
/// `warren dev`'s base port unless `--base-port` says otherwise (so its first proxy, where
/// `warren ctl` connects by default, is 127.0.0.1:7201).
pub const DEFAULT_BASE_PORT: u16 = 7100;

/// Offset of the admin ports from the gRPC ports of the cells.
const CELL_ADMIN_OFFSET: u16 = 80;
/// Offset of proxy j's gRPC port (P+100+j) from the base port.
const PROXY_OFFSET: u16 = 100;
/// Offset of proxy j's admin port (P+180+j) from the base port.
const PROXY_ADMIN_OFFSET: u16 = 180;

/// A local deployment: `cells` data cells and `proxies` proxies around one meta cell, with
/// ports from `base_port` (see the [module docs](self)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Data cells, `c1..cN`.
    pub cells: u16,
    /// Proxies, `p1..pM`.
    pub proxies: u16,
    /// P: the meta cell's port, the others follow; 0 picks free ports.
    pub base_port: u16,
}

/// A member's two ports: gRPC and admin HTTP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ports {
    pub grpc: u16,
    pub admin: u16,
}

impl Layout {
    /// `cells` data cells and `proxies` proxies on ports from `base_port`.
    pub fn new(cells: u16, proxies: u16, base_port: u16) -> Self {
        Layout {
            cells,
            proxies,
            base_port,
        }
    }

    fn at(&self, offset: u16) -> u16 {
        if self.base_port == 0 {
            0
        } else {
            self.base_port + offset
        }
    }

    /// The meta cell's ports.
    pub fn meta_ports(&self) -> Ports {
        Ports {
            grpc: self.at(0),
            admin: self.at(CELL_ADMIN_OFFSET),
        }
    }

    /// Data cell `ck`'s ports, k ≥ 1.
    pub fn cell_ports(&self, k: u16) -> Ports {
        Ports {
            grpc: self.at(k),
            admin: self.at(CELL_ADMIN_OFFSET + k),
        }
    }

    /// Proxy `pj`'s ports, j ≥ 1.
    pub fn proxy_ports(&self, j: u16) -> Ports {
        Ports {
            grpc: self.at(PROXY_OFFSET + j),
            admin: self.at(PROXY_ADMIN_OFFSET + j),
        }
    }

    /// Data cell k's name, `ck` (k ≥ 1).
    pub fn cell_name(k: u16) -> String {
        format!("c{k}")
    }

    /// Proxy j's name, `pj` (j ≥ 1).
    pub fn proxy_name(j: u16) -> String {
        format!("p{j}")
    }

    /// The data cells' names, `c1..cN`.
    pub fn cell_names(&self) -> Vec<String> {
        (1..=self.cells).map(Self::cell_name).collect()
    }

    /// The proxies' names, `p1..pM`.
    pub fn proxy_names(&self) -> Vec<String> {
        (1..=self.proxies).map(Self::proxy_name).collect()
    }

    /// Where the member `name` (`meta`, `ck`) keeps its store under the deployment's
    /// directory `data`.
    pub fn store_dir(data: &Path, name: &str) -> PathBuf {
        data.join(name)
    }

    /// The cells the first partition map names, in order, each at its one replica's
    /// address: `c1..cN` paired with `addrs` (one `HOST:PORT` per data cell, in order), as
    /// `warren_client::admin::write_initial_map` takes them.
    pub fn initial_map_cells<A: ToString>(&self, addrs: &[A]) -> Vec<(String, Vec<String>)> {
        assert_eq!(
            addrs.len(),
            usize::from(self.cells),
            "one address per data cell"
        );
        self.cell_names()
            .into_iter()
            .zip(addrs)
            .map(|(name, addr)| (name, vec![addr.to_string()]))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_port_layout() {
        let l = Layout::new(MAX_EACH, MAX_EACH, 7100);
        let pair = |p: Ports| (p.grpc, p.admin);
        assert_eq!(pair(l.meta_ports()), (7100, 7180));
        assert_eq!(pair(l.cell_ports(1)), (7101, 7181));
        assert_eq!(pair(l.cell_ports(20)), (7120, 7200));
        assert_eq!(pair(l.proxy_ports(1)), (7201, 7281));
        assert_eq!(pair(l.proxy_ports(20)), (7220, 7300));
        let free = Layout::new(3, 2, 0);
        assert_eq!(
            (
                pair(free.meta_ports()),
                pair(free.cell_ports(3)),
                pair(free.proxy_ports(2))
            ),
            ((0, 0), (0, 0), (0, 0))
        );
        // The highest base port still fits.
        let top = Layout::new(MAX_EACH, MAX_EACH, MAX_BASE_PORT);
        assert_eq!(top.proxy_ports(MAX_EACH).admin, u16::MAX);
        // No two ports of a full layout collide.
        let mut ports: Vec<u16> = vec![l.meta_ports().grpc, l.meta_ports().admin];
        for k in 1..=MAX_EACH {
            let (c, p) = (l.cell_ports(k), l.proxy_ports(k));
            ports.extend([c.grpc, c.admin, p.grpc, p.admin]);
        }
        let n = ports.len();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), n);
    }

    #[test]
    fn names_directories_and_the_first_map() {
        let l = Layout::new(3, 2, 0);
        assert_eq!(l.cell_names(), ["c1", "c2", "c3"]);
        assert_eq!(l.proxy_names(), ["p1", "p2"]);
        assert_eq!(
            Layout::store_dir(Path::new("/d"), META),
            PathBuf::from("/d/meta")
        );
        assert_eq!(
            l.initial_map_cells(&["h:1", "h:2", "h:3"]),
            [
                ("c1".to_owned(), vec!["h:1".to_owned()]),
                ("c2".to_owned(), vec!["h:2".to_owned()]),
                ("c3".to_owned(), vec!["h:3".to_owned()]),
            ]
        );
    }
}
