//! The configuration of one distributed-lock node, read from a small text file (what
//! `shmlink lockd --config FILE` and `shmlink lock NAME --config FILE` read).
//!
//! The format and its rules are in the docs of [`NodeConfig`].

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::dlock::protocol::{Config, ConfigError, Nanos, Node};
use crate::dlock::quorum::{
    Grid, MAX_NODES, Majority, NodeId, ProjectivePlane, QuorumError, QuorumSystem, default_for,
};
use crate::transport::Address;

/// The largest configuration file [`NodeConfig::load`] reads. A file of
/// [`MAX_NODES`] members takes some 30 KiB; the bound keeps a wrong path (a device, a
/// log file) from filling memory.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// Which quorum system the cluster uses, by name (`default`, `majority`, `grid`,
/// `plane`; see [`quorum`](super::quorum)).
///
/// # Examples
///
/// ```
/// use shmlink::dlock::QuorumChoice;
///
/// let choice: QuorumChoice = "grid".parse()?;
/// assert_eq!(choice, QuorumChoice::Grid);
/// assert_eq!(choice.to_string(), "grid");
/// assert_eq!(QuorumChoice::default(), QuorumChoice::Default);
/// assert!("Grid".parse::<QuorumChoice>().is_err());
/// # Ok::<(), shmlink::dlock::ConfigFileError>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum QuorumChoice {
    /// [`default_for`] the number of members.
    #[default]
    Default,
    /// [`Majority`].
    Majority,
    /// [`Grid`].
    Grid,
    /// [`ProjectivePlane`]: only for `q*q + q + 1` members, `q` prime (7, 13, 31, 57,
    /// ...).
    Plane,
}

impl QuorumChoice {
    /// Every choice, in the order the docs list them.
    const ALL: [QuorumChoice; 4] = [
        QuorumChoice::Default,
        QuorumChoice::Majority,
        QuorumChoice::Grid,
        QuorumChoice::Plane,
    ];

    /// The name in a configuration file.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::dlock::QuorumChoice;
    ///
    /// assert_eq!(QuorumChoice::Plane.name(), "plane");
    /// ```
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            QuorumChoice::Default => "default",
            QuorumChoice::Majority => "majority",
            QuorumChoice::Grid => "grid",
            QuorumChoice::Plane => "plane",
        }
    }

    /// The system of this kind for `nodes` members.
    ///
    /// # Errors
    ///
    /// The [`QuorumError`] of the system's constructor: no nodes, more than
    /// [`MAX_NODES`], or a plane for a count that has none.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::dlock::QuorumChoice;
    /// use shmlink::dlock::quorum::QuorumError;
    ///
    /// assert_eq!(QuorumChoice::Plane.build(13)?.quorum_size(), 4);
    /// assert_eq!(QuorumChoice::Default.build(13)?.name(), "majority");
    /// assert_eq!(QuorumChoice::Plane.build(8).unwrap_err(), QuorumError::NotAPlane { nodes: 8 });
    /// # Ok::<(), QuorumError>(())
    /// ```
    pub fn build(self, nodes: usize) -> Result<Arc<dyn QuorumSystem>, QuorumError> {
        Ok(match self {
            QuorumChoice::Default => Arc::from(default_for(nodes)?),
            QuorumChoice::Majority => Arc::new(Majority::new(nodes)?),
            QuorumChoice::Grid => Arc::new(Grid::new(nodes)?),
            QuorumChoice::Plane => Arc::new(ProjectivePlane::new(nodes)?),
        })
    }
}

impl fmt::Display for QuorumChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for QuorumChoice {
    type Err = ConfigFileError;

    /// One of the lowercase names; anything else is [`ConfigFileError::Invalid`] for
    /// the key `quorum` (without a line).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| ConfigFileError::Invalid {
                key: "quorum",
                line: None,
                value: s.to_string(),
                reason: "expected default, majority, grid or plane".to_string(),
            })
    }
}

/// The configuration of one distributed-lock node, parsed and checked.
///
/// # The file
///
/// One `key = value` per line. A `#` at the start of a line, or after a space or a tab,
/// starts a comment that runs to the end of the line (so a path such as
/// `/srv/a#b` keeps its `#`). Blank lines are ignored; white space around keys and
/// values is not significant. A key the format does not know, or a key given twice, is
/// an error naming the line.
///
/// ```text
/// # shmlink lockd configuration
/// epoch = 1                       # configuration epoch (required, above 0)
/// node = 0                        # this node's index into members (required)
/// members = tcp://10.0.0.1:7000, tcp://10.0.0.2:7000, tcp://10.0.0.3:7000
/// listen = tcp://0.0.0.0:7000     # default: members[node]
/// quorum = default                # default | majority | grid | plane
/// lease = 10s                     # ns, us, ms, s, m, h
/// epsilon = 1%                    # or 10000ppm
/// retransmit = 200ms
/// state = /var/lib/shmlink/node0.state
/// local = shm://shmlink-lockd     # where processes on this host reach the node
/// ```
///
/// | key | required | value | default |
/// |-----|----------|-------|---------|
/// | `epoch` | yes | the cluster's configuration epoch, a whole number above 0 | |
/// | `node` | yes | this node's index into `members` | |
/// | `members` | yes | every node's URL, comma separated, 1 to [`MAX_NODES`], no duplicates | |
/// | `listen` | no | the URL this node listens on | `members[node]` |
/// | `quorum` | no | a [`QuorumChoice`] | `default` |
/// | `lease` | no | a duration of at least 1ms | [`Config::DEFAULT_LEASE`] |
/// | `epsilon` | no | the clock drift bound, `1%`, `0.5%` or `5000ppm`, at most 10% | [`Config::DEFAULT_EPSILON_PPM`] |
/// | `retransmit` | no | a duration above 0 and at most a third of the lease | [`Config::DEFAULT_RETRANSMIT`] |
/// | `state` | yes | the node's state file ([`NodeState`](super::NodeState)) | |
/// | `local` | no | the URL processes on this host use to reach the node | [`NodeConfig::DEFAULT_LOCAL`] |
///
/// URLs are `shm://NAME`, `unix:///PATH` or `tcp://HOST:PORT`, checked by
/// [`Address::parse`]. Durations are a whole number and a unit: `1500us`, `250ms`,
/// `10s`, `2m`. Every node of a cluster must agree on `epoch`, `members`, `quorum`,
/// `lease` and `epsilon`.
///
/// # Checks
///
/// [`parse`](Self::parse) and [`load`](Self::load) run [`check`](Self::check); a value
/// built in code (with [`new`](Self::new) and field updates) should be checked the
/// same way before use.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use shmlink::dlock::{NodeConfig, QuorumChoice};
///
/// let config = NodeConfig::parse(
///     "epoch = 3\n\
///      node = 1\n\
///      members = tcp://10.0.0.1:7000, tcp://10.0.0.2:7000, tcp://10.0.0.3:7000\n\
///      lease = 5s   # shorter than the default\n\
///      state = /var/lib/shmlink/node1.state\n",
/// )?;
/// assert_eq!(config.node, 1);
/// assert_eq!(config.listen, "tcp://10.0.0.2:7000");
/// assert_eq!(config.quorum, QuorumChoice::Default);
/// assert_eq!(config.lease, Duration::from_secs(5));
///
/// let protocol = config.protocol()?;
/// assert_eq!((protocol.epoch, protocol.quorums.name()), (3, "majority"));
/// # Ok::<(), shmlink::dlock::ConfigFileError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// The cluster's configuration epoch, above 0 (`epoch`). Raise it whenever
    /// `members`, `quorum`, `lease` or `epsilon` change: nodes drop messages of
    /// another epoch.
    pub epoch: u64,
    /// This node, an index into `members` (`node`).
    pub node: NodeId,
    /// Every node's URL, in node order (`members`): 1 to [`MAX_NODES`], no
    /// duplicates, none holding a comma.
    pub members: Vec<String>,
    /// Where this node listens for the other nodes (`listen`); by default
    /// `members[node]`, but a node may bind a wildcard address instead.
    pub listen: String,
    /// Which quorum system (`quorum`).
    pub quorum: QuorumChoice,
    /// The lease (`lease`), at least [`MIN_LEASE`](Self::MIN_LEASE): see
    /// [`Config::lease`].
    pub lease: Duration,
    /// The clock drift bound in parts per million (`epsilon`), at most
    /// [`Config::MAX_EPSILON_PPM`].
    pub epsilon_ppm: u32,
    /// The retransmission interval (`retransmit`), above 0 and at most a third of the
    /// lease.
    pub retransmit: Duration,
    /// The node's state file (`state`): its incarnation and fencing high-water mark
    /// (see [`NodeState`](super::NodeState)). A relative path is taken from the
    /// process's working directory.
    pub state_file: PathBuf,
    /// Where processes on this host reach the node (`local`). Two nodes on one host
    /// need different values.
    pub local: String,
}

impl NodeConfig {
    /// The default of [`local`](Self::local).
    pub const DEFAULT_LOCAL: &'static str = "shm://shmlink-lockd";
    /// The shortest lease accepted. (The protocol itself takes any lease of 3 ns or
    /// more; below a millisecond, scheduling and network delays eat the whole lease.)
    pub const MIN_LEASE: Duration = Duration::from_millis(1);

    /// A configuration of epoch 1 with the defaults of every optional key: `listen`
    /// is `members[node]` (empty if `node` is out of range, which
    /// [`check`](Self::check) reports).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::dlock::NodeConfig;
    /// use shmlink::dlock::protocol::Config;
    ///
    /// let members = vec!["tcp://a:7000".to_string(), "tcp://b:7000".to_string()];
    /// let config = NodeConfig::new(1, members, "/tmp/node1.state");
    /// assert_eq!((config.epoch, config.listen.as_str()), (1, "tcp://b:7000"));
    /// assert_eq!(config.lease, Config::DEFAULT_LEASE);
    /// assert_eq!(config.local, NodeConfig::DEFAULT_LOCAL);
    /// config.check()?;
    /// # Ok::<(), shmlink::dlock::ConfigFileError>(())
    /// ```
    #[must_use]
    pub fn new(node: NodeId, members: Vec<String>, state_file: impl Into<PathBuf>) -> NodeConfig {
        let listen = members.get(usize::from(node)).cloned().unwrap_or_default();
        NodeConfig {
            epoch: 1,
            node,
            members,
            listen,
            quorum: QuorumChoice::Default,
            lease: Config::DEFAULT_LEASE,
            epsilon_ppm: Config::DEFAULT_EPSILON_PPM,
            retransmit: Config::DEFAULT_RETRANSMIT,
            state_file: state_file.into(),
            local: Self::DEFAULT_LOCAL.to_string(),
        }
    }

    /// Parses and [checks](Self::check) a configuration file's text.
    ///
    /// # Errors
    ///
    /// [`ConfigFileError::Syntax`] for a line that is not `key = value`,
    /// [`UnknownKey`](ConfigFileError::UnknownKey),
    /// [`Duplicate`](ConfigFileError::Duplicate),
    /// [`Missing`](ConfigFileError::Missing) for a required key not given,
    /// [`Invalid`](ConfigFileError::Invalid) for a value that does not parse or breaks
    /// a rule of the [`NodeConfig`] docs, and [`Quorum`](ConfigFileError::Quorum) when
    /// the chosen system does not exist for the number of members. Never panics.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::dlock::{ConfigFileError, NodeConfig};
    ///
    /// let text = "epoch = 1\nnode = 0\nmembers = shm://n0\nstate = n0.state\nleese = 3s\n";
    /// let err = NodeConfig::parse(text).unwrap_err();
    /// assert!(matches!(&err, ConfigFileError::UnknownKey { line: 5, key } if key == "leese"));
    /// assert_eq!(err.line(), Some(5));
    /// assert!(err.to_string().starts_with("line 5: unknown key \"leese\""));
    /// ```
    pub fn parse(text: &str) -> Result<NodeConfig, ConfigFileError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut found: Found<'_> = [None; Key::ALL.len()];
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let content = strip_comment(raw).trim();
            if content.is_empty() {
                continue;
            }
            let Some((key, value)) = content.split_once('=') else {
                return Err(ConfigFileError::Syntax {
                    line,
                    message: format!("expected `key = value`, found {content:?}"),
                });
            };
            let key = key.trim();
            if key.is_empty() {
                return Err(ConfigFileError::Syntax {
                    line,
                    message: "no key before the `=`".to_string(),
                });
            }
            let Some(k) = Key::from_name(key) else {
                return Err(ConfigFileError::UnknownKey {
                    line,
                    key: key.to_string(),
                });
            };
            if let Some((first, _)) = found[k as usize] {
                return Err(ConfigFileError::Duplicate {
                    line,
                    key: k.name(),
                    first,
                });
            }
            found[k as usize] = Some((line, value.trim()));
        }

        let epoch = required(&found, Key::Epoch, parse_whole::<u64>)?;
        let node = required(&found, Key::Node, |v| {
            parse_whole::<NodeId>(v).map_err(|_| "expected a node index (0 to 65535)".to_string())
        })?;
        let members = required(&found, Key::Members, parse_members)?;
        let listen = optional(&found, Key::Listen, |v| Ok(v.to_string()))?
            .unwrap_or_else(|| members.get(usize::from(node)).cloned().unwrap_or_default());
        let quorum = optional(&found, Key::Quorum, |v| {
            v.parse::<QuorumChoice>()
                .map_err(|_| "expected default, majority, grid or plane".to_string())
        })?
        .unwrap_or_default();
        let lease = optional(&found, Key::Lease, parse_duration)?.unwrap_or(Config::DEFAULT_LEASE);
        let epsilon_ppm =
            optional(&found, Key::Epsilon, parse_epsilon)?.unwrap_or(Config::DEFAULT_EPSILON_PPM);
        let retransmit = optional(&found, Key::Retransmit, parse_duration)?
            .unwrap_or(Config::DEFAULT_RETRANSMIT);
        let state_file = required(&found, Key::State, |v| Ok(PathBuf::from(v)))?;
        let local = optional(&found, Key::Local, |v| Ok(v.to_string()))?
            .unwrap_or_else(|| Self::DEFAULT_LOCAL.to_string());

        let config = NodeConfig {
            epoch,
            node,
            members,
            listen,
            quorum,
            lease,
            epsilon_ppm,
            retransmit,
            state_file,
            local,
        };
        config.check().map_err(|e| e.at_line_of_key(&found))?;
        Ok(config)
    }

    /// Reads and [parses](Self::parse) the file at `path`.
    ///
    /// # Errors
    ///
    /// [`ConfigFileError::Io`] if the file cannot be read, is not UTF-8 or is larger
    /// than 1 MiB; any other error of [`parse`](Self::parse) wrapped in
    /// [`ConfigFileError::InFile`], so that it displays as `PATH: line N: ...`.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::dlock::{ConfigFileError, NodeConfig};
    ///
    /// let path = std::env::temp_dir().join(format!("doc-dlock-config-{}", std::process::id()));
    /// std::fs::write(&path, "epoch = 1\nnode = 0\nmembers = shm://n0\nstate = n0.state\n")?;
    /// assert_eq!(NodeConfig::load(&path)?.members, ["shm://n0"]);
    ///
    /// std::fs::write(&path, "epoch = 1\nnode = 0\nnode = 1\n")?;
    /// let err = NodeConfig::load(&path).unwrap_err();
    /// assert_eq!(err.path(), Some(path.as_path()));
    /// assert!(matches!(err.inner(), ConfigFileError::Duplicate { line: 3, key: "node", first: 2 }));
    /// assert_eq!(
    ///     err.to_string(),
    ///     format!("{}: line 3: node is set again (first on line 2)", path.display()),
    /// );
    /// std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn load(path: impl AsRef<Path>) -> Result<NodeConfig, ConfigFileError> {
        let path = path.as_ref();
        let io_error = |source| ConfigFileError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut text = String::new();
        File::open(path)
            .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_string(&mut text))
            .map_err(io_error)?;
        if text.len() as u64 > MAX_FILE_BYTES {
            return Err(io_error(io::Error::new(
                io::ErrorKind::FileTooLarge,
                "larger than the 1 MiB a configuration file may have",
            )));
        }
        Self::parse(&text).map_err(|error| ConfigFileError::InFile {
            path: path.to_path_buf(),
            error: Box::new(error),
        })
    }

    /// The configuration as a file's text, every key written out.
    /// [`parse`](Self::parse) of the text gives back `self` when `self` passes
    /// [`check`](Self::check) (which refuses what the format cannot carry: a state
    /// path that is not UTF-8, a member holding a comma, a value starting with `#`
    /// or holding a control character).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmlink::dlock::NodeConfig;
    ///
    /// let mut config = NodeConfig::new(0, vec!["unix:///run/n0.sock".into()], "/var/n0.state");
    /// config.lease = Duration::from_millis(1500);
    /// config.retransmit = Duration::from_micros(250);
    /// config.epsilon_ppm = 5_000;
    /// let text = config.to_text();
    /// assert!(text.contains("lease = 1500ms\n"));
    /// assert!(text.contains("retransmit = 250us\n"));
    /// assert!(text.contains("epsilon = 5000ppm\n"));
    /// assert_eq!(NodeConfig::parse(&text)?, config);
    /// # Ok::<(), shmlink::dlock::ConfigFileError>(())
    /// ```
    #[must_use]
    pub fn to_text(&self) -> String {
        format!(
            "# shmlink dlock node configuration\n\
             epoch = {}\n\
             node = {}\n\
             members = {}\n\
             listen = {}\n\
             quorum = {}\n\
             lease = {}\n\
             epsilon = {}\n\
             retransmit = {}\n\
             state = {}\n\
             local = {}\n",
            self.epoch,
            self.node,
            self.members.join(", "),
            self.listen,
            self.quorum,
            format_duration(self.lease),
            format_epsilon(self.epsilon_ppm),
            format_duration(self.retransmit),
            self.state_file.display(),
            self.local,
        )
    }

    /// Checks every rule of the [`NodeConfig`] docs and builds the quorum system once
    /// to see that it exists. [`parse`](Self::parse) runs this; errors found here
    /// carry no line (`parse` adds the line of the key, when the file gave it).
    ///
    /// # Errors
    ///
    /// [`ConfigFileError::Invalid`] naming the first key whose value breaks a rule, in
    /// the order of the table in the [`NodeConfig`] docs, or [`ConfigFileError::Quorum`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmlink::dlock::{ConfigFileError, NodeConfig};
    ///
    /// let mut config = NodeConfig::new(0, vec!["tcp://a:7000".into()], "/var/n0.state");
    /// config.retransmit = Duration::from_secs(4);
    /// let err = config.check().unwrap_err();
    /// assert!(matches!(err, ConfigFileError::Invalid { key: "retransmit", line: None, .. }));
    /// assert_eq!(
    ///     err.to_string(),
    ///     "retransmit = \"4s\": above a third of the lease (10s)",
    /// );
    /// ```
    pub fn check(&self) -> Result<(), ConfigFileError> {
        let invalid = |key, value: String, reason: String| ConfigFileError::Invalid {
            key,
            line: None,
            value,
            reason,
        };
        if self.epoch == 0 {
            return Err(invalid("epoch", "0".into(), "must be above 0".into()));
        }

        let n = self.members.len();
        if n == 0 {
            return Err(invalid("members", String::new(), "no members".into()));
        }
        if n > MAX_NODES {
            return Err(invalid(
                "members",
                format!("{n} members"),
                format!("more than the {MAX_NODES} supported"),
            ));
        }
        let mut seen = HashMap::with_capacity(n);
        for (i, member) in self.members.iter().enumerate() {
            let bad = |reason: String| invalid("members", member.clone(), reason);
            if member.contains(',') {
                return Err(bad(format!("member {i} holds a comma")));
            }
            check_url(member).map_err(|why| bad(format!("member {i}: {why}")))?;
            if let Some(first) = seen.insert(member.as_str(), i) {
                return Err(bad(format!("members {first} and {i} are the same")));
            }
        }
        if usize::from(self.node) >= n {
            return Err(invalid(
                "node",
                self.node.to_string(),
                format!("not below the number of members ({n})"),
            ));
        }
        check_url(&self.listen).map_err(|why| invalid("listen", self.listen.clone(), why))?;

        if self.lease < Self::MIN_LEASE {
            return Err(invalid(
                "lease",
                format_duration(self.lease),
                format!("below the {} accepted", format_duration(Self::MIN_LEASE)),
            ));
        }
        if self.epsilon_ppm > Config::MAX_EPSILON_PPM {
            return Err(invalid(
                "epsilon",
                format_epsilon(self.epsilon_ppm),
                format!(
                    "above the {} accepted",
                    format_epsilon(Config::MAX_EPSILON_PPM)
                ),
            ));
        }
        // In saturated nanoseconds, as the protocol compares them, so that a lease of
        // centuries cannot pass here and fail there.
        let retransmit = saturating_nanos(self.retransmit);
        if retransmit == 0 {
            return Err(invalid("retransmit", "0s".into(), "must be above 0".into()));
        }
        if retransmit > saturating_nanos(self.lease) / 3 {
            return Err(invalid(
                "retransmit",
                format_duration(self.retransmit),
                format!(
                    "above a third of the lease ({})",
                    format_duration(self.lease)
                ),
            ));
        }

        let Some(state) = self.state_file.to_str() else {
            return Err(invalid(
                "state",
                self.state_file.display().to_string(),
                "not UTF-8".into(),
            ));
        };
        if state.is_empty() {
            return Err(invalid("state", String::new(), "empty".into()));
        }
        writable(state).map_err(|why| invalid("state", state.to_string(), why.into()))?;
        check_url(&self.local).map_err(|why| invalid("local", self.local.clone(), why))?;

        self.quorum_system().map(drop)
    }

    /// The quorum system chosen, for `members.len()` nodes.
    ///
    /// # Errors
    ///
    /// [`ConfigFileError::Quorum`]: no members, more than [`MAX_NODES`], or a plane
    /// for a count that has none.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::dlock::{ConfigFileError, NodeConfig, QuorumChoice};
    /// use shmlink::dlock::quorum::QuorumError;
    ///
    /// let members: Vec<String> = (0..7).map(|i| format!("tcp://10.0.0.{i}:7000")).collect();
    /// let mut config = NodeConfig::new(0, members, "/var/n0.state");
    /// config.quorum = QuorumChoice::Plane;
    /// assert_eq!(config.quorum_system()?.quorum_size(), 3);
    ///
    /// config.members.pop();
    /// assert!(matches!(
    ///     config.quorum_system(),
    ///     Err(ConfigFileError::Quorum(QuorumError::NotAPlane { nodes: 6 })),
    /// ));
    /// # Ok::<(), ConfigFileError>(())
    /// ```
    pub fn quorum_system(&self) -> Result<Arc<dyn QuorumSystem>, ConfigFileError> {
        self.quorum
            .build(self.members.len())
            .map_err(ConfigFileError::Quorum)
    }

    /// The protocol configuration of this node: epoch, node, quorum system, lease,
    /// drift bound and retransmission interval, checked as
    /// [`protocol::Node::new`](Node::new) checks it. (Only what the protocol needs is
    /// checked here; [`check`](Self::check) covers the file's rules.)
    ///
    /// # Errors
    ///
    /// [`ConfigFileError::Quorum`] as for [`quorum_system`](Self::quorum_system), and
    /// [`ConfigFileError::Protocol`] for a configuration the protocol refuses.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::dlock::{ConfigFileError, NodeConfig};
    /// use shmlink::dlock::protocol::ConfigError;
    ///
    /// let members: Vec<String> = (0..5).map(|i| format!("tcp://10.0.0.{i}:7000")).collect();
    /// let config = NodeConfig::new(4, members.clone(), "/var/n4.state");
    /// let protocol = config.protocol()?;
    /// assert_eq!((protocol.node, protocol.quorums.nodes()), (4, 5));
    ///
    /// let stray = NodeConfig::new(5, members, "/var/n5.state");
    /// assert!(matches!(
    ///     stray.protocol(),
    ///     Err(ConfigFileError::Protocol(ConfigError::NodeOutOfRange { node: 5, nodes: 5 })),
    /// ));
    /// # Ok::<(), ConfigFileError>(())
    /// ```
    pub fn protocol(&self) -> Result<Config, ConfigFileError> {
        let config = Config {
            epoch: self.epoch,
            node: self.node,
            quorums: self.quorum_system()?,
            lease: self.lease,
            epsilon_ppm: self.epsilon_ppm,
            retransmit: self.retransmit,
        };
        // `Config::check` is private to the protocol module; `Node::new` runs it and
        // otherwise only allocates a vector of `nodes` words, so a throwaway node is
        // the check, with the protocol's own rules and errors.
        Node::new(config.clone(), 1, 0, Nanos(0)).map_err(ConfigFileError::Protocol)?;
        Ok(config)
    }
}

/// Why a node configuration could not be loaded or used.
///
/// Display names the line where there is one, and, for [`NodeConfig::load`], the
/// file: `/etc/shmlink/lockd.conf: line 4: lease = "10x": ...`.
///
/// # Examples
///
/// ```
/// use shmlink::dlock::{ConfigFileError, NodeConfig};
///
/// let err = NodeConfig::parse("epoch = 1\nnode = 0\nmembers = shm://a, shm://a\nstate = s\n")
///     .unwrap_err();
/// assert!(matches!(err, ConfigFileError::Invalid { key: "members", line: Some(3), .. }));
/// assert_eq!(
///     err.to_string(),
///     "line 3: members = \"shm://a\": members 0 and 1 are the same",
/// );
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigFileError {
    /// The file could not be read (or is not UTF-8, or is larger than 1 MiB).
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Another error, found in the file at `path` ([`NodeConfig::load`]).
    InFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it (never `Io` or `InFile`).
        error: Box<ConfigFileError>,
    },
    /// A line that is not `key = value`, a comment or blank.
    Syntax {
        /// The line, from 1.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A key the format does not have.
    UnknownKey {
        /// The line, from 1.
        line: usize,
        /// The key as written.
        key: String,
    },
    /// A key given a second time.
    Duplicate {
        /// The line of the second, from 1.
        line: usize,
        /// The key.
        key: &'static str,
        /// The line of the first.
        first: usize,
    },
    /// A required key (`epoch`, `node`, `members`, `state`) is not given.
    Missing {
        /// The key.
        key: &'static str,
    },
    /// A value that does not parse or breaks a rule.
    Invalid {
        /// The key.
        key: &'static str,
        /// The key's line, when the value came from a file that gave the key.
        line: Option<usize>,
        /// The value (for `members`, the member at fault).
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// The chosen quorum system cannot be built for the members.
    Quorum(QuorumError),
    /// The protocol refuses the configuration ([`NodeConfig::protocol`]).
    Protocol(ConfigError),
}

impl ConfigFileError {
    /// The file the error is in, if it came from [`NodeConfig::load`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::dlock::NodeConfig;
    ///
    /// let err = NodeConfig::load("/nonexistent/lockd.conf").unwrap_err();
    /// assert_eq!(err.path(), Some("/nonexistent/lockd.conf".as_ref()));
    /// assert!(NodeConfig::parse("").unwrap_err().path().is_none());
    /// ```
    #[must_use]
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::Io { path, .. } | Self::InFile { path, .. } => Some(path),
            _ => None,
        }
    }

    /// The line the error is on, if it has one.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::dlock::NodeConfig;
    ///
    /// assert_eq!(NodeConfig::parse("\n# comment\nepoch 1\n").unwrap_err().line(), Some(3));
    /// assert_eq!(NodeConfig::parse("").unwrap_err().line(), None);
    /// ```
    #[must_use]
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::InFile { error, .. } => error.line(),
            Self::Syntax { line, .. }
            | Self::UnknownKey { line, .. }
            | Self::Duplicate { line, .. } => Some(*line),
            Self::Invalid { line, .. } => *line,
            _ => None,
        }
    }

    /// The error without the file it was found in: for
    /// [`InFile`](Self::InFile) the inner error, else `self`.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::dlock::{ConfigFileError, NodeConfig};
    ///
    /// let err = NodeConfig::parse("epoch = 1\n").unwrap_err();
    /// assert!(matches!(err.inner(), ConfigFileError::Missing { key: "node" }));
    /// ```
    #[must_use]
    pub fn inner(&self) -> &ConfigFileError {
        match self {
            Self::InFile { error, .. } => error.inner(),
            other => other,
        }
    }

    /// Fills in the line of an [`Invalid`](Self::Invalid) error's key, when the file
    /// gave the key.
    fn at_line_of_key(self, found: &Found<'_>) -> ConfigFileError {
        match self {
            Self::Invalid {
                key,
                line: None,
                value,
                reason,
            } => Self::Invalid {
                key,
                line: Key::from_name(key).and_then(|k| found[k as usize].map(|(l, _)| l)),
                value,
                reason,
            },
            other => other,
        }
    }
}

impl fmt::Display for ConfigFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { path, source } => write!(f, "{}: cannot read: {source}", path.display()),
            Self::InFile { path, error } => write!(f, "{}: {error}", path.display()),
            Self::Syntax { line, message } => write!(f, "line {line}: {message}"),
            Self::UnknownKey { line, key } => {
                write!(f, "line {line}: unknown key {key:?} (the keys are ")?;
                for (i, k) in Key::ALL.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    write!(f, "{sep}{}", k.name())?;
                }
                f.write_str(")")
            }
            Self::Duplicate { line, key, first } => {
                write!(f, "line {line}: {key} is set again (first on line {first})")
            }
            Self::Missing { key } => write!(f, "the required key {key} is missing"),
            Self::Invalid {
                key,
                line,
                value,
                reason,
            } => {
                if let Some(line) = line {
                    write!(f, "line {line}: ")?;
                }
                write!(f, "{key} = {value:?}: {reason}")
            }
            Self::Quorum(e) => write!(f, "quorum: {e}"),
            Self::Protocol(e) => write!(f, "protocol configuration: {e}"),
        }
    }
}

impl std::error::Error for ConfigFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            // The file is context around the inner error, not a cause of it.
            Self::InFile { error, .. } => error.source(),
            Self::Quorum(e) => Some(e),
            Self::Protocol(e) => Some(e),
            _ => None,
        }
    }
}

impl From<QuorumError> for ConfigFileError {
    fn from(e: QuorumError) -> Self {
        Self::Quorum(e)
    }
}

impl From<ConfigError> for ConfigFileError {
    fn from(e: ConfigError) -> Self {
        Self::Protocol(e)
    }
}

/// The keys of the file, in the order of the table in the [`NodeConfig`] docs.
#[derive(Debug, Clone, Copy)]
enum Key {
    Epoch,
    Node,
    Members,
    Listen,
    Quorum,
    Lease,
    Epsilon,
    Retransmit,
    State,
    Local,
}

impl Key {
    const ALL: [Key; 10] = [
        Key::Epoch,
        Key::Node,
        Key::Members,
        Key::Listen,
        Key::Quorum,
        Key::Lease,
        Key::Epsilon,
        Key::Retransmit,
        Key::State,
        Key::Local,
    ];

    fn name(self) -> &'static str {
        match self {
            Key::Epoch => "epoch",
            Key::Node => "node",
            Key::Members => "members",
            Key::Listen => "listen",
            Key::Quorum => "quorum",
            Key::Lease => "lease",
            Key::Epsilon => "epsilon",
            Key::Retransmit => "retransmit",
            Key::State => "state",
            Key::Local => "local",
        }
    }

    fn from_name(name: &str) -> Option<Key> {
        Key::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// Per key (indexed by `Key as usize`): its line and its value, if the file gave it.
type Found<'a> = [Option<(usize, &'a str)>; Key::ALL.len()];

/// The value of `key` parsed with `parse`, `None` if the file did not give it.
fn optional<T>(
    found: &Found<'_>,
    key: Key,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<Option<T>, ConfigFileError> {
    let Some((line, value)) = found[key as usize] else {
        return Ok(None);
    };
    parse(value)
        .map(Some)
        .map_err(|reason| ConfigFileError::Invalid {
            key: key.name(),
            line: Some(line),
            value: value.to_string(),
            reason,
        })
}

/// The value of `key` parsed with `parse`; [`ConfigFileError::Missing`] if not given.
fn required<T>(
    found: &Found<'_>,
    key: Key,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, ConfigFileError> {
    optional(found, key, parse)?.ok_or(ConfigFileError::Missing { key: key.name() })
}

/// `line` up to its comment: a `#` at the start or after a space or tab.
fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    let start = (0..bytes.len())
        .find(|&i| bytes[i] == b'#' && (i == 0 || matches!(bytes[i - 1], b' ' | b'\t')));
    // `#` is ASCII, so `i` is a character boundary.
    start.map_or(line, |i| &line[..i])
}

/// A whole number written in ASCII digits only (no sign, no `_`).
fn parse_whole<T: FromStr>(v: &str) -> Result<T, String> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err("expected a whole number".to_string());
    }
    v.parse().map_err(|_| "too large".to_string())
}

/// Comma separated members, white space around each ignored; none may be empty.
fn parse_members(v: &str) -> Result<Vec<String>, String> {
    v.split(',')
        .enumerate()
        .map(|(i, m)| {
            let m = m.trim();
            if m.is_empty() {
                Err(format!("member {i} is empty (a stray comma?)"))
            } else {
                Ok(m.to_string())
            }
        })
        .collect()
}

/// Duration units, largest first, in nanoseconds.
const UNITS: [(&str, u128); 6] = [
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

/// `1500us`, `250ms`, `10s`, `2m`: a whole number, then (after optional spaces) a unit.
fn parse_duration(v: &str) -> Result<Duration, String> {
    const EXPECTED: &str = "expected a whole number and a unit (ns, us, ms, s, m, h), as in 250ms";
    let digits = v.bytes().take_while(u8::is_ascii_digit).count();
    // ASCII digits, so `digits` is a character boundary.
    let (number, unit) = v.split_at(digits);
    let unit = unit.trim_start();
    if number.is_empty() {
        return Err(EXPECTED.to_string());
    }
    let Some(&(_, per)) = UNITS.iter().find(|(name, _)| *name == unit) else {
        return Err(EXPECTED.to_string());
    };
    let too_long = || "too long".to_string();
    let nanos = number
        .parse::<u128>()
        .ok()
        .and_then(|n| n.checked_mul(per))
        .ok_or_else(too_long)?;
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| too_long())?;
    Ok(Duration::new(secs, (nanos % 1_000_000_000) as u32)) // < 10^9
}

/// `d` in the largest unit that writes it exactly (`0s` for zero).
fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    let (name, per) = UNITS
        .into_iter()
        .find(|&(_, per)| nanos.is_multiple_of(per))
        .unwrap_or(("ns", 1));
    format!("{}{name}", nanos / per)
}

/// Parts per million in one percent.
const PPM_PER_PERCENT: u64 = 10_000;

/// `1%`, `0.5%` (at most 4 decimals: 0.0001% is 1 ppm) or `5000ppm`.
fn parse_epsilon(v: &str) -> Result<u32, String> {
    const EXPECTED: &str = "expected a percentage (1%, 0.5%) or parts per million (5000ppm)";
    let too_large = || "too large".to_string();
    let ppm = if let Some(n) = v.strip_suffix("ppm") {
        parse_whole::<u64>(n.trim_end()).map_err(|_| EXPECTED.to_string())?
    } else if let Some(p) = v.strip_suffix('%') {
        let (whole, frac) = p.trim_end().split_once('.').unwrap_or((p.trim_end(), ""));
        let whole = parse_whole::<u64>(whole).map_err(|_| EXPECTED.to_string())?;
        if frac.len() > 4 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err("expected at most 4 decimals (0.0001% is 1 ppm)".to_string());
        }
        // Pad to 4 decimals: "5" is 5000 ppm, "0001" is 1.
        let frac_ppm = format!("{frac:0<4}").parse::<u64>().unwrap_or(0);
        whole
            .checked_mul(PPM_PER_PERCENT)
            .and_then(|w| w.checked_add(frac_ppm))
            .ok_or_else(too_large)?
    } else {
        return Err(EXPECTED.to_string());
    };
    u32::try_from(ppm).map_err(|_| too_large())
}

/// Whole percentages as `N%`, anything else as `Nppm`.
fn format_epsilon(ppm: u32) -> String {
    if u64::from(ppm).is_multiple_of(PPM_PER_PERCENT) {
        format!("{}%", u64::from(ppm) / PPM_PER_PERCENT)
    } else {
        format!("{ppm}ppm")
    }
}

/// A URL the crate's transports accept, and that a file can carry.
fn check_url(url: &str) -> Result<(), String> {
    writable(url).map_err(str::to_string)?;
    Address::parse(url).map(drop).map_err(|e| e.why.to_string())
}

/// Whether `value` survives `key = value` and [`NodeConfig::parse`] unchanged.
fn writable(value: &str) -> Result<(), &'static str> {
    if value.trim() != value {
        Err("has white space at the start or end")
    } else if value.chars().any(char::is_control) {
        Err("holds a control character")
    } else if value.starts_with('#') || value.contains(" #") {
        Err("holds a `#` that would start a comment")
    } else {
        Ok(())
    }
}

/// `d` in nanoseconds, saturating, as the protocol converts it.
fn saturating_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A full file: every key given, each with a comment after the value.
    const EXAMPLE: &str = "\
# shmlink lockd configuration
epoch = 1                       # configuration epoch (required, u64 > 0)
node = 0                        # this node's index into members (required)
members = tcp://10.0.0.1:7000, tcp://10.0.0.2:7000, tcp://10.0.0.3:7000   # required
listen = tcp://0.0.0.0:7000     # optional: where this node listens
quorum = default                # optional: default | majority | grid | plane
lease = 10s                     # optional durations
epsilon = 1%                    # optional: \"1%\" or \"10000ppm\"
retransmit = 200ms              # optional
state = /var/lib/shmlink/node0.state   # required
local = shm://shmlink-lockd     # optional
";

    /// A minimal file: the required keys only, `n` tcp members.
    fn minimal(node: usize, n: usize) -> String {
        format!(
            "epoch = 7\nnode = {node}\nmembers = {}\nstate = /var/n.state\n",
            members(n).join(", ")
        )
    }

    fn members(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("tcp://10.0.{}.{}:7000", i / 256, i % 256))
            .collect()
    }

    /// The required keys, and one member.
    const BASE: &str = "epoch = 1\nnode = 0\nmembers = shm://n0\nstate = /s\n";

    /// `text` with the line of `line`'s key replaced by `line`, or `line` appended.
    fn set(text: &str, line: &str) -> String {
        let key = line.split('=').next().unwrap_or("").trim();
        text.lines()
            .filter(|l| l.split('=').next().unwrap_or("").trim() != key)
            .chain([line])
            .map(|l| format!("{l}\n"))
            .collect()
    }

    /// `text` with `line` appended.
    fn with(text: &str, line: &str) -> String {
        format!("{text}{line}\n")
    }

    /// The error of parsing `text`, which must fail.
    fn err(text: &str) -> ConfigFileError {
        NodeConfig::parse(text).expect_err(text)
    }

    /// The key, line, value and reason of an `Invalid` error.
    fn invalid(e: &ConfigFileError) -> (&'static str, Option<usize>, &str, &str) {
        match e {
            ConfigFileError::Invalid {
                key,
                line,
                value,
                reason,
            } => (key, *line, value, reason),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn the_documented_example_parses() {
        let c = NodeConfig::parse(EXAMPLE).unwrap();
        assert_eq!(c.epoch, 1);
        assert_eq!(c.node, 0);
        assert_eq!(
            c.members,
            [
                "tcp://10.0.0.1:7000",
                "tcp://10.0.0.2:7000",
                "tcp://10.0.0.3:7000"
            ]
        );
        assert_eq!(c.listen, "tcp://0.0.0.0:7000");
        assert_eq!(c.quorum, QuorumChoice::Default);
        assert_eq!(c.lease, Duration::from_secs(10));
        assert_eq!(c.epsilon_ppm, 10_000);
        assert_eq!(c.retransmit, Duration::from_millis(200));
        assert_eq!(c.state_file, Path::new("/var/lib/shmlink/node0.state"));
        assert_eq!(c.local, "shm://shmlink-lockd");
        // And the `NodeConfig` docs hold the same file, less some comments.
        let docs = include_str!("config.rs");
        let documented: String = docs
            .lines()
            .skip_while(|l| *l != "/// ```text")
            .skip(1)
            .take_while(|l| *l != "/// ```")
            .map(|l| format!("{}\n", l.trim_start_matches("/// ")))
            .collect();
        assert_eq!(NodeConfig::parse(&documented).unwrap(), c);
    }

    #[test]
    fn defaults_fill_the_optional_keys() {
        let c = NodeConfig::parse(&minimal(2, 3)).unwrap();
        let mut expected = NodeConfig::new(2, members(3), "/var/n.state");
        expected.epoch = 7;
        assert_eq!(c, expected);
        assert_eq!(c.listen, "tcp://10.0.0.2:7000");
        assert_eq!(c.quorum, QuorumChoice::Default);
        assert_eq!(c.lease, Config::DEFAULT_LEASE);
        assert_eq!(c.epsilon_ppm, Config::DEFAULT_EPSILON_PPM);
        assert_eq!(c.retransmit, Config::DEFAULT_RETRANSMIT);
        assert_eq!(c.local, NodeConfig::DEFAULT_LOCAL);
        // Comments, blank lines, CRLF, a BOM and free spacing change nothing.
        let noisy = "\u{feff}# top\r\n\r\n  epoch=7  \r\n\tnode =2 # me\r\n\
                     members=tcp://10.0.0.0:7000 ,tcp://10.0.0.1:7000,  tcp://10.0.0.2:7000\r\n\
                     # state = elsewhere\r\nstate   =   /var/n.state\r\n";
        assert_eq!(NodeConfig::parse(noisy).unwrap(), c);
    }

    #[test]
    fn a_hash_inside_a_value_is_not_a_comment() {
        let text = with(&minimal(0, 1), "local = unix:///run/a#b.sock # comment");
        let text = text.replace("state = /var/n.state", "state = /var/n#1.state");
        let c = NodeConfig::parse(&text).unwrap();
        assert_eq!(c.local, "unix:///run/a#b.sock");
        assert_eq!(c.state_file, Path::new("/var/n#1.state"));
        assert_eq!(NodeConfig::parse(&c.to_text()).unwrap(), c);
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let e = err("epoch = 1\n\n# c\nnode 0\n");
        assert!(
            matches!(&e, ConfigFileError::Syntax { line: 4, .. }),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "line 4: expected `key = value`, found \"node 0\""
        );
        let e = err("epoch = 1\n = 3\n");
        assert!(
            matches!(e, ConfigFileError::Syntax { line: 2, .. }),
            "{e:?}"
        );
    }

    #[test]
    fn unknown_keys_are_errors() {
        for key in ["Epoch", "lease_ms", "members list", "x#"] {
            let text = with(&minimal(0, 1), &format!("{key} = 1"));
            match err(&text) {
                ConfigFileError::UnknownKey { line: 5, key: k } => assert_eq!(k, key),
                other => panic!("{key}: {other:?}"),
            }
        }
        let e = err("epoch = 1\nnodes = 3\n");
        assert_eq!(
            e.to_string(),
            "line 2: unknown key \"nodes\" (the keys are epoch, node, members, listen, \
             quorum, lease, epsilon, retransmit, state, local)"
        );
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let e = err(&with(&minimal(0, 1), "epoch = 7"));
        assert!(
            matches!(
                e,
                ConfigFileError::Duplicate {
                    line: 5,
                    key: "epoch",
                    first: 1
                }
            ),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "line 5: epoch is set again (first on line 1)"
        );
    }

    #[test]
    fn required_keys_are_required() {
        let full = minimal(0, 1);
        for key in ["epoch", "node", "members", "state"] {
            let text: String = full
                .lines()
                .filter(|l| !l.starts_with(key))
                .map(|l| format!("{l}\n"))
                .collect();
            let e = err(&text);
            assert!(
                matches!(e, ConfigFileError::Missing { key: k } if k == key),
                "{e:?}"
            );
            assert_eq!(e.to_string(), format!("the required key {key} is missing"));
            assert_eq!(e.line(), None);
        }
    }

    #[test]
    fn values_that_do_not_parse_name_key_and_line() {
        let cases = [
            ("epoch = -1", "epoch"),
            ("epoch = +1", "epoch"),
            ("epoch = 99999999999999999999", "epoch"),
            ("node = 65536", "node"),
            ("quorum = Majority", "quorum"),
            ("lease = 10", "lease"),
            ("lease = 1.5s", "lease"),
            ("lease = 10 sec", "lease"),
            ("lease = 999999999999999999999999h", "lease"),
            ("epsilon = 1", "epsilon"),
            ("epsilon = 0.00001%", "epsilon"),
            ("epsilon = 5000000000ppm", "epsilon"),
            ("retransmit = ms", "retransmit"),
        ];
        for (line, key) in cases {
            let text = set(BASE, line);
            let e = err(&text);
            let (k, at, value, _) = invalid(&e);
            assert_eq!((k, at), (key, Some(text.lines().count())), "{line}: {e}");
            assert_eq!(value, line.split_once(" = ").unwrap().1, "{line}");
        }
        let e = err(&with(BASE, "lease = 10x"));
        assert_eq!(
            e.to_string(),
            "line 5: lease = \"10x\": expected a whole number and a unit \
             (ns, us, ms, s, m, h), as in 250ms"
        );
    }

    #[test]
    fn rules_are_checked_with_the_line_of_the_key() {
        let cases = [
            ("epoch = 0", "epoch", "must be above 0"),
            ("node = 3", "node", "not below"),
            ("members = shm://a,", "members", "empty"),
            ("members = http://a", "members", "member 0"),
            ("members = tcp://a:1, tcp://a:1", "members", "same"),
            ("listen = tcp://x", "listen", "HOST:PORT"),
            ("local = shm://a/b", "local", "shm names"),
            ("lease = 999us", "lease", "below"),
            ("epsilon = 11%", "epsilon", "above"),
            ("retransmit = 0ms", "retransmit", "above 0"),
            ("state =", "state", "empty"),
        ];
        for (line, key, reason) in cases {
            let text = set(BASE, line);
            let e = err(&text);
            let (k, at, _, r) = invalid(&e);
            let expected = text.lines().position(|l| l == line).unwrap() + 1;
            assert_eq!((k, at), (key, Some(expected)), "{line}: {e}");
            assert!(r.contains(reason), "{line}: {e}");
        }
        // A rule broken by a default: no line for the key the file did not give.
        let e = err(&with(BASE, "lease = 300ms"));
        assert_eq!(invalid(&e).0, "retransmit");
        assert_eq!(
            e.to_string(),
            "retransmit = \"200ms\": above a third of the lease (300ms)"
        );
        // Node out of range: the node is reported, not the empty default `listen`.
        let e = err(&minimal(3, 3));
        let (key, line, ..) = invalid(&e);
        assert_eq!((key, line), ("node", Some(2)));
    }

    #[test]
    fn members_are_bounded() {
        assert_eq!(
            NodeConfig::parse(&minimal(0, MAX_NODES))
                .unwrap()
                .members
                .len(),
            MAX_NODES
        );
        let e = err(&minimal(0, MAX_NODES + 1));
        let (key, line, value, _) = invalid(&e);
        assert_eq!((key, line, value), ("members", Some(3), "1025 members"));
        let e = NodeConfig::new(0, Vec::new(), "/s").check().unwrap_err();
        let (key, line, ..) = invalid(&e);
        assert_eq!((key, line), ("members", None));
    }

    #[test]
    fn check_refuses_what_the_file_cannot_carry() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;

        let ok = NodeConfig::new(0, vec!["unix:///run/a.sock".into()], "/s");
        ok.check().unwrap();
        let mut c = ok.clone();
        c.members = vec!["unix:///run/a,b.sock".into()];
        assert!(invalid(&c.check().unwrap_err()).3.contains("comma"));
        let mut c = ok.clone();
        c.state_file = Path::new(OsStr::from_bytes(b"/var/\xff")).to_path_buf();
        assert_eq!(invalid(&c.check().unwrap_err()).3, "not UTF-8");
        for state in ["/var/a #b", "#b", " /var/a", "/var/a\nb"] {
            let mut c = ok.clone();
            c.state_file = state.into();
            assert_eq!(invalid(&c.check().unwrap_err()).0, "state", "{state:?}");
        }
        let mut c = ok.clone();
        c.local = "unix:///run/a #b".into();
        assert_eq!(invalid(&c.check().unwrap_err()).0, "local");
    }

    #[test]
    fn load_names_the_file() {
        let dir = std::env::temp_dir().join(format!("shmlink-config-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("lockd.conf");

        let e = NodeConfig::load(&path).unwrap_err();
        assert!(matches!(&e, ConfigFileError::Io { source, .. }
            if source.kind() == io::ErrorKind::NotFound));
        assert!(
            e.to_string()
                .starts_with(&format!("{}: cannot read: ", path.display()))
        );
        assert!(std::error::Error::source(&e).is_some());

        std::fs::write(&path, EXAMPLE).unwrap();
        assert_eq!(
            NodeConfig::load(&path).unwrap(),
            NodeConfig::parse(EXAMPLE).unwrap()
        );

        std::fs::write(&path, EXAMPLE.replace("lease = 10s", "lease = 10x")).unwrap();
        let e = NodeConfig::load(&path).unwrap_err();
        assert_eq!(e.path(), Some(path.as_path()));
        assert_eq!(e.line(), Some(7));
        assert!(matches!(
            e.inner(),
            ConfigFileError::Invalid {
                key: "lease",
                line: Some(7),
                ..
            }
        ));
        assert!(
            e.to_string()
                .starts_with(&format!("{}: line 7: lease = \"10x\": ", path.display()))
        );

        std::fs::write(&path, b"epoch = 1\n\xff\n").unwrap();
        let e = NodeConfig::load(&path).unwrap_err();
        assert!(matches!(&e, ConfigFileError::Io { source, .. }
            if source.kind() == io::ErrorKind::InvalidData));

        let big = "#".repeat(MAX_FILE_BYTES as usize + 1);
        std::fs::write(&path, big).unwrap();
        let e = NodeConfig::load(&path).unwrap_err();
        assert!(matches!(&e, ConfigFileError::Io { source, .. }
            if source.kind() == io::ErrorKind::FileTooLarge));

        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn round_trips() {
        let c = NodeConfig::parse(EXAMPLE).unwrap();
        assert_eq!(NodeConfig::parse(&c.to_text()).unwrap(), c);

        let mut c = NodeConfig::new(1, members(7), "relative/n1.state");
        c.epoch = u64::MAX;
        c.quorum = QuorumChoice::Plane;
        c.lease = Duration::new(3_601, 1);
        c.retransmit = Duration::from_nanos(1);
        c.epsilon_ppm = Config::MAX_EPSILON_PPM;
        c.local = "unix:///run/shmlink/n1.sock".into();
        c.listen = "tcp://[::]:7000".into();
        c.check().unwrap();
        let text = c.to_text();
        assert!(text.contains("lease = 3601000000001ns\n"), "{text}");
        assert!(text.contains("epsilon = 10%\n"), "{text}");
        assert_eq!(NodeConfig::parse(&text).unwrap(), c);
    }

    #[test]
    fn durations_and_drift_bounds() {
        let d = |s: &str| parse_duration(s).unwrap();
        assert_eq!(d("250ms"), Duration::from_millis(250));
        assert_eq!(d("10s"), Duration::from_secs(10));
        assert_eq!(d("2m"), Duration::from_secs(120));
        assert_eq!(d("1h"), Duration::from_secs(3600));
        assert_eq!(d("1500us"), Duration::from_micros(1500));
        assert_eq!(d("7 ns"), Duration::from_nanos(7));
        assert_eq!(d("0s"), Duration::ZERO);
        let max = format!("{}s", u64::MAX);
        assert_eq!(d(&max), Duration::from_secs(u64::MAX));
        assert!(parse_duration(&format!("{}0s", u64::MAX)).is_err());
        for (dur, text) in [
            (Duration::from_secs(120), "2m"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_millis(1500), "1500ms"),
            (Duration::from_micros(1), "1us"),
            (Duration::ZERO, "0s"),
            (Duration::from_secs(7200), "2h"),
        ] {
            assert_eq!(format_duration(dur), text);
        }
        let e = |s: &str| parse_epsilon(s).unwrap();
        assert_eq!(e("1%"), 10_000);
        assert_eq!(e("0.5%"), 5_000);
        assert_eq!(e("0.0001 %"), 1);
        assert_eq!(e("10000ppm"), 10_000);
        assert_eq!(e("0ppm"), 0);
        for bad in ["%", ".5%", "1.%x", "1e3ppm", "-1%", "1.2.3%", "ppm"] {
            assert!(parse_epsilon(bad).is_err(), "{bad}");
        }
        assert_eq!(format_epsilon(10_000), "1%");
        assert_eq!(format_epsilon(12_345), "12345ppm");
        assert_eq!(format_epsilon(0), "0%");
    }

    #[test]
    fn quorum_choices_build_their_systems() {
        let system = |choice: QuorumChoice, n: usize| {
            let text = with(&minimal(0, n), &format!("quorum = {choice}"));
            NodeConfig::parse(&text)
                .and_then(|c| c.quorum_system())
                .map(|s| (s.name(), s.nodes(), s.quorum_size()))
        };
        assert_eq!(
            system(QuorumChoice::Majority, 5).unwrap(),
            ("majority", 5, 3)
        );
        assert_eq!(system(QuorumChoice::Grid, 9).unwrap(), ("grid", 9, 5));
        assert_eq!(system(QuorumChoice::Plane, 7).unwrap(), ("plane", 7, 3));
        assert_eq!(system(QuorumChoice::Plane, 13).unwrap(), ("plane", 13, 4));
        assert_eq!(
            system(QuorumChoice::Default, 13).unwrap(),
            ("majority", 13, 7)
        );
        assert_eq!(system(QuorumChoice::Default, 31).unwrap(), ("plane", 31, 6));

        // A plane of 8 is refused by parse, and by quorum_system on a built config.
        let e = system(QuorumChoice::Plane, 8).unwrap_err();
        assert!(
            matches!(
                e,
                ConfigFileError::Quorum(QuorumError::NotAPlane { nodes: 8 })
            ),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .starts_with("quorum: plane quorum system of 8 nodes")
        );
        let mut c = NodeConfig::new(0, members(8), "/s");
        c.quorum = QuorumChoice::Plane;
        assert!(matches!(
            c.quorum_system(),
            Err(ConfigFileError::Quorum(QuorumError::NotAPlane { nodes: 8 }))
        ));
        assert!(matches!(c.check(), Err(ConfigFileError::Quorum(_))));

        for choice in QuorumChoice::ALL {
            assert_eq!(choice.to_string().parse::<QuorumChoice>().unwrap(), choice);
        }
        assert!(matches!(
            "mesh".parse::<QuorumChoice>(),
            Err(ConfigFileError::Invalid {
                key: "quorum",
                line: None,
                ..
            })
        ));
    }

    #[test]
    fn protocol_carries_the_timing_and_checks_it() {
        let mut c = NodeConfig::parse(&minimal(3, 5)).unwrap();
        c.lease = Duration::from_secs(3);
        c.retransmit = Duration::from_millis(50);
        c.epsilon_ppm = 2_000;
        let p = c.protocol().unwrap();
        assert_eq!((p.epoch, p.node), (7, 3));
        assert_eq!((p.quorums.name(), p.quorums.nodes()), ("majority", 5));
        assert_eq!(
            (p.lease, p.retransmit, p.epsilon_ppm),
            (c.lease, c.retransmit, 2_000)
        );

        let mut bad = c.clone();
        bad.epsilon_ppm = Config::MAX_EPSILON_PPM + 1;
        let e = bad.protocol().unwrap_err();
        assert!(
            matches!(
                e,
                ConfigFileError::Protocol(ConfigError::EpsilonTooLarge { .. })
            ),
            "{e:?}"
        );
        assert!(e.to_string().starts_with("protocol configuration: "));
        assert!(std::error::Error::source(&e).is_some());
        let mut bad = c.clone();
        bad.retransmit = Duration::from_secs(2);
        assert!(matches!(
            bad.protocol(),
            Err(ConfigFileError::Protocol(ConfigError::RetransmitOutOfRange))
        ));
        let mut bad = c.clone();
        bad.node = 5;
        assert!(matches!(
            bad.protocol(),
            Err(ConfigFileError::Protocol(ConfigError::NodeOutOfRange {
                node: 5,
                nodes: 5
            }))
        ));
        let mut bad = c;
        bad.members.clear();
        assert!(matches!(
            bad.protocol(),
            Err(ConfigFileError::Quorum(QuorumError::Empty { .. }))
        ));
    }

    /// A line that looks like the format: a key (mostly known), `=`, and any value.
    fn config_like_line() -> impl Strategy<Value = String> {
        let keys = prop::sample::select(vec![
            "epoch",
            "node",
            "members",
            "listen",
            "quorum",
            "lease",
            "epsilon",
            "retransmit",
            "state",
            "local",
            "other",
            "",
        ]);
        (keys, any::<String>(), any::<bool>()).prop_map(|(k, v, comment)| {
            let hash = if comment { " # c" } else { "" };
            format!("{k} = {v}{hash}")
        })
    }

    /// A configuration that passes `check`.
    fn valid_config() -> impl Strategy<Value = NodeConfig> {
        (
            1usize..=9,
            any::<prop::sample::Index>(),
            prop::sample::select(vec![
                QuorumChoice::Default,
                QuorumChoice::Majority,
                QuorumChoice::Grid,
            ]),
            1u64..=u64::MAX,
            1_000_000u64..=3_600_000_000_000,
            any::<prop::sample::Index>(),
            0..=Config::MAX_EPSILON_PPM,
            "/[a-z0-9._#/-]{0,20}",
        )
            .prop_map(
                |(n, node, quorum, epoch, lease, retransmit, epsilon_ppm, state)| {
                    let members: Vec<String> = (0..n)
                        .map(|i| match i % 3 {
                            0 => format!("tcp://host{i}:{}", 7000 + i),
                            1 => format!("unix:///run/node{i}.sock"),
                            _ => format!("shm://node-{i}"),
                        })
                        .collect();
                    let node = node.index(n);
                    let mut c = NodeConfig::new(node as NodeId, members, state);
                    c.epoch = epoch;
                    c.quorum = quorum;
                    c.lease = Duration::from_nanos(lease);
                    c.retransmit =
                        Duration::from_nanos(1 + retransmit.index(lease as usize / 3) as u64);
                    c.epsilon_ppm = epsilon_ppm;
                    c
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        #[cfg_attr(miri, ignore = "proptest: too slow under Miri")]
        fn arbitrary_text_never_panics(text in any::<String>()) {
            let _ = NodeConfig::parse(&text);
        }

        #[test]
        #[cfg_attr(miri, ignore = "proptest: too slow under Miri")]
        fn config_like_text_never_panics(lines in prop::collection::vec(config_like_line(), 0..12)) {
            let text = lines.join("\n");
            if let Err(e) = NodeConfig::parse(&text) {
                let _ = e.to_string();
            }
        }

        #[test]
        #[cfg_attr(miri, ignore = "proptest: too slow under Miri")]
        fn valid_configs_round_trip(c in valid_config()) {
            prop_assert!(c.check().is_ok(), "{:?}", c.check());
            prop_assert_eq!(NodeConfig::parse(&c.to_text()).unwrap(), c.clone());
            prop_assert!(c.protocol().is_ok());
        }
    }
}
