//! Sessions: created by `auth`, carrying a single-use nonce, then the
//! attestation result, until they expire.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{Error, Result};

/// What a session has reached.
#[derive(Clone, Debug)]
pub enum SessionState {
    /// Challenged: the nonce is still unused.
    Challenged {
        /// The nonce text as sent.
        nonce: String,
    },
    /// The nonce was used by a failed attestation.
    Burned,
    /// Attested: the annotated evidence (claims, init data, tee-pubkey) and the token.
    Attested {
        /// Annotated evidence, as in the token.
        annotated: Value,
    },
}

/// One session.
#[derive(Clone, Debug)]
pub struct Session {
    /// The TEE named in `auth`.
    pub tee: String,
    /// When it expires.
    pub expires: Instant,
    /// Its state.
    pub state: SessionState,
}

/// All sessions, in memory.
#[derive(Debug)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    ttl: Duration,
    max: usize,
}

impl Sessions {
    /// Sessions living `ttl`, at most `max` at once.
    pub fn new(ttl: Duration, max: usize) -> Self {
        Sessions {
            map: Mutex::new(HashMap::new()),
            ttl,
            max,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A poisoned lock only means another request panicked mid-update of
        // a plain map; the map is still consistent.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates a session for `tee` with `nonce`; returns its id.
    pub fn create(&self, tee: &str, nonce: String) -> Result<String> {
        let id = crate::crypto::b64url(&crate::crypto::random_bytes(24)?);
        let now = Instant::now();
        let mut m = self.lock();
        if m.len() >= self.max {
            m.retain(|_, s| s.expires > now);
            if m.len() >= self.max {
                return Err(Error::Unavailable(
                    "too many open sessions; retry later".into(),
                ));
            }
        }
        m.insert(
            id.clone(),
            Session {
                tee: tee.to_string(),
                expires: now + self.ttl,
                state: SessionState::Challenged { nonce },
            },
        );
        Ok(id)
    }

    /// The live session `id` (401 if missing or expired).
    pub fn get(&self, id: &str) -> Result<Session> {
        let mut m = self.lock();
        match m.get(id) {
            Some(s) if s.expires > Instant::now() => Ok(s.clone()),
            Some(_) => {
                m.remove(id);
                Err(Error::Unauthorized(
                    "session expired; start again with /auth".into(),
                ))
            }
            None => Err(Error::Unauthorized(
                "unknown session; start with POST /kbs/v0/auth".into(),
            )),
        }
    }

    /// Takes the nonce of session `id` for one attestation attempt: the
    /// session is marked burned, so the nonce can never be used again.
    pub fn take_nonce(&self, id: &str) -> Result<(String, String)> {
        let mut m = self.lock();
        let now = Instant::now();
        let Some(s) = m.get_mut(id) else {
            return Err(Error::Unauthorized(
                "unknown session; start with POST /kbs/v0/auth".into(),
            ));
        };
        if s.expires <= now {
            m.remove(id);
            return Err(Error::Unauthorized(
                "session expired; start again with /auth".into(),
            ));
        }
        match std::mem::replace(&mut s.state, SessionState::Burned) {
            SessionState::Challenged { nonce } => Ok((s.tee.clone(), nonce)),
            other => {
                s.state = other;
                Err(Error::Unauthorized(
                    "the nonce of this session was already used; start again with /auth".into(),
                ))
            }
        }
    }

    /// Records a successful attestation on session `id`.
    pub fn set_attested(&self, id: &str, annotated: Value) {
        if let Some(s) = self.lock().get_mut(id) {
            s.state = SessionState::Attested { annotated };
        }
    }

    /// Drops expired sessions; returns how many remain.
    pub fn sweep(&self) -> usize {
        let now = Instant::now();
        let mut m = self.lock();
        m.retain(|_, s| s.expires > now);
        m.len()
    }

    /// Number of sessions held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_is_single_use_and_sessions_expire() {
        let s = Sessions::new(Duration::from_millis(200), 2);
        let id = s.create("sim", "n".into()).unwrap();
        assert_eq!(s.take_nonce(&id).unwrap(), ("sim".into(), "n".into()));
        assert!(s
            .take_nonce(&id)
            .unwrap_err()
            .to_string()
            .contains("already used"));
        s.create("sim", "m".into()).unwrap();
        assert!(matches!(
            s.create("sim", "o".into()),
            Err(Error::Unavailable(_))
        ));
        std::thread::sleep(Duration::from_millis(250));
        assert!(s.get(&id).unwrap_err().to_string().contains("expired"));
        assert_eq!(s.sweep(), 0);
        assert!(s.create("sim", "p".into()).is_ok());
        assert!(s.get("nope").is_err());
    }
}
