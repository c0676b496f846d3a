/// What the kit can fail with. A service wraps it in its own `Error`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The log refused or failed.
    #[error(transparent)]
    Log(#[from] klaxon_log::Error),
    /// A stored event does not decode: the log holds history this version
    /// cannot fold.
    #[error("the event at position {position} does not decode: {reason}")]
    Undecodable {
        /// Where.
        position: klaxon_log::Position,
        /// Why.
        reason: String,
    },
    /// A service's rows table (`crate::table`) failed or holds a slot that
    /// does not check out.
    #[error("rows table {path}: {reason}")]
    Table {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The service is stopping or not keeping up with the log.
    #[error("{service} is unavailable: {reason}")]
    Unavailable {
        /// Which service.
        service: &'static str,
        /// Why.
        reason: String,
    },
}

impl Error {
    /// Whether a retry may succeed: the service is catching up or stopping,
    /// or the log server is away (distributed topology).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Unavailable { .. } | Error::Log(klaxon_log::Error::Unavailable { .. }))
    }
}

impl klaxon_domain::class::Classify for Error {
    fn class(&self) -> klaxon_domain::class::Class {
        use klaxon_domain::class::Class;
        match self {
            Error::Log(e) => e.class(),
            Error::Undecodable { .. } | Error::Table { .. } => Class::Internal,
            Error::Unavailable { .. } => Class::Unavailable,
        }
    }

    fn current_version(&self) -> Option<u64> {
        match self {
            Error::Log(e) => klaxon_domain::class::Classify::current_version(e),
            _ => None,
        }
    }
}
