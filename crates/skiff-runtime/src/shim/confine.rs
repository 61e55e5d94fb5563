//! The executor the shim gives libcontainer: it installs the container's seccomp filter and
//! drops the capabilities lent for that, then execs the payload as libcontainer's default
//! executor would. libcontainer runs it last in the container's process, after namespaces,
//! mounts, user and capabilities are set up and after the start signal, so the filter
//! covers exactly the payload (and the few calls between it and `exec`).

use std::path::Path;

use caps::{CapSet, Capability};
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use oci_spec::runtime::{LinuxSeccomp, Spec};

use crate::error::{Error, IoContext, Result};
use crate::seccomp::{self, Filter, TEMPORARY_CAPS_ANNOTATION};

/// Seccomp filter and lent capabilities of one container, compiled in the shim before
/// libcontainer forks, so that the container's process only has to install them.
#[derive(Debug, Clone, Default)]
pub(super) struct Confinement {
    filter: Option<Filter>,
    temporary: Vec<Capability>,
}

impl Confinement {
    /// Reads `linux.seccomp` and the temporary-capability annotation from a bundle's
    /// `config.json`.
    pub(super) fn from_bundle(id: &str, bundle: &Path) -> Result<Self> {
        let path = bundle.join("config.json");
        let bytes = std::fs::read(&path).ctx("read spec", &path)?;
        let spec: Spec = serde_json::from_slice(&bytes).map_err(|source| Error::Json {
            what: "spec",
            path: path.clone(),
            source,
        })?;
        let err = |reason: String| Error::Seccomp {
            id: id.to_string(),
            profile: path.display().to_string(),
            reason,
        };
        let profile: Option<&LinuxSeccomp> =
            spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
        let filter = profile
            .map(seccomp::compile)
            .transpose()
            .map_err(|e| err(e.to_string()))?;
        let temporary = spec
            .annotations()
            .as_ref()
            .and_then(|a| a.get(TEMPORARY_CAPS_ANNOTATION))
            .map(|list| {
                list.split(',')
                    .filter(|c| !c.is_empty())
                    .map(|c| {
                        c.parse::<Capability>()
                            .map_err(|e| err(format!("{c}: {e}")))
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .transpose()?
            .unwrap_or_default();
        Ok(Self { filter, temporary })
    }

    /// The executor to hand to libcontainer.
    pub(super) fn executor(self) -> ConfiningExecutor {
        ConfiningExecutor(self)
    }
}

/// See the module docs.
#[derive(Clone)]
pub(super) struct ConfiningExecutor(Confinement);

impl ConfiningExecutor {
    fn confine(&self) -> std::result::Result<(), String> {
        let c = &self.0;
        if let Some(filter) = &c.filter {
            seccomp::install(filter).map_err(|e| format!("install seccomp filter: {e}"))?;
        }
        // The bounding set first: dropping from it needs CAP_SETPCAP, which may itself be
        // one of the lent capabilities and so still effective here.
        for set in [
            CapSet::Bounding,
            CapSet::Ambient,
            CapSet::Inheritable,
            CapSet::Effective,
            CapSet::Permitted,
        ] {
            for &cap in &c.temporary {
                caps::drop(None, set, cap)
                    .map_err(|e| format!("drop {cap} from {set:?} set: {e}"))?;
            }
        }
        Ok(())
    }
}

impl Executor for ConfiningExecutor {
    fn exec(&self, spec: &Spec) -> std::result::Result<(), ExecutorError> {
        self.confine().map_err(ExecutorError::Other)?;
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> std::result::Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }
}
