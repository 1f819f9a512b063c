//! Resource release policy in Rego (evaluated by `regorus`).
//!
//! The policy is a Rego module in package `cocoon.kbs` whose rule `allow`
//! must be `true` for a resource to be released. It sees:
//!
//! * `input.tee`: the TEE name;
//! * `input.claims`: the normalized claims (`cocoon_attest::Claims` JSON);
//! * `input.init_data`: the verified [`crate::InitData`] (its digest matched
//!   the evidence), or `null`;
//! * `input.resource`: `{"uri": "kbs:///r/t/g", "repo", "type", "tag"}`;
//! * `input.config`: `{"allow_sim", "allow_sample"}` from the KBS config;
//! * `data.reference_values`: every uploaded [`crate::ReferenceValues`].

use std::sync::{Arc, RwLock};

use serde_json::{json, Value};

use crate::reference::ReferenceValues;
use crate::{Error, Result};

/// The rule the KBS evaluates for a resource.
pub const ALLOW_RULE: &str = "data.cocoon.kbs.allow";
/// The rule the KBS evaluates for a workload certificate (`input.resource` is null).
pub const ALLOW_CERT_RULE: &str = "data.cocoon.kbs.allow_cert";

/// The default policy: release a resource listed in the reference values of
/// the workload whose digest, launcher digest and signer all match the init
/// data; refuse debug evidence unless it is sim (or sample) and the config
/// allows it.
pub const DEFAULT_POLICY: &str = r#"package cocoon.kbs

import rego.v1

default allow := false

allow if {
	some rv in data.reference_values
	rv.workload_digest == input.init_data.workload_digest
	rv.launcher_digest == input.init_data.launcher_digest
	rv.signer == input.init_data.signer
	input.resource.uri in rv.resources
	debug_ok
}

allow_cert if {
	some rv in data.reference_values
	rv.workload_digest == input.init_data.workload_digest
	rv.launcher_digest == input.init_data.launcher_digest
	rv.signer == input.init_data.signer
	debug_ok
}

debug_ok if not input.claims.debug

debug_ok if {
	input.claims.tee == "sim"
	input.config.allow_sim == true
}

debug_ok if {
	input.claims.tee == "sample"
	input.config.allow_sample == true
}
"#;

/// A compiled policy with its data.
pub struct Policy {
    engine: RwLock<Arc<regorus::Engine>>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Policy")
    }
}

/// Compiles `rego` with `reference_values` as data.
pub fn compile(rego: &str, reference_values: &[ReferenceValues]) -> Result<regorus::Engine> {
    let mut e = regorus::Engine::new();
    e.set_strict_builtin_errors(false);
    e.add_policy("policy.rego".into(), rego.into())
        .map_err(|e| Error::BadRequest(format!("policy does not compile: {e}")))?;
    let packages = e
        .get_packages()
        .map_err(|e| Error::BadRequest(format!("policy: {e}")))?;
    if !packages.iter().any(|p| p == "data.cocoon.kbs") {
        return Err(Error::BadRequest(
            "policy must be in package cocoon.kbs and define the rule allow".into(),
        ));
    }
    let data = json!({ "reference_values": reference_values });
    e.add_data_json(&data.to_string())
        .map_err(|e| Error::Internal(format!("policy data: {e}")))?;
    Ok(e)
}

impl Policy {
    /// A policy from Rego text and reference values.
    pub fn new(rego: &str, reference_values: &[ReferenceValues]) -> Result<Self> {
        Ok(Policy {
            engine: RwLock::new(Arc::new(compile(rego, reference_values)?)),
        })
    }

    /// Replaces the policy and data (after compiling them).
    pub fn replace(&self, rego: &str, reference_values: &[ReferenceValues]) -> Result<()> {
        let e = Arc::new(compile(rego, reference_values)?);
        *self.engine.write().unwrap_or_else(|p| p.into_inner()) = e;
        Ok(())
    }

    /// Evaluates `allow` for `input`. Any evaluation error is a denial.
    pub fn allows(&self, input: &Value) -> Result<bool> {
        self.eval(ALLOW_RULE, input)
    }

    /// Evaluates boolean rule `rule` for `input`; undefined or an error is false.
    pub fn eval(&self, rule: &str, input: &Value) -> Result<bool> {
        let base = self
            .engine
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut e = (*base).clone();
        e.set_input_json(&input.to_string())
            .map_err(|e| Error::Internal(format!("policy input: {e}")))?;
        match e.eval_rule(rule.into()) {
            Ok(v) => Ok(v == regorus::Value::from(true)),
            Err(err) => {
                tracing::warn!(error = %err, "policy evaluation failed; denying");
                Ok(false)
            }
        }
    }
}

/// Builds the policy input.
pub fn input(
    claims: &Value,
    init_data: &Value,
    resource_uri: &str,
    allow_sim: bool,
    allow_sample: bool,
) -> Result<Value> {
    let (repo, kind, tag) = crate::reference::parse_resource_uri(resource_uri)?;
    let resource = json!({"uri": crate::reference::resource_uri(&repo, &kind, &tag), "repo": repo, "type": kind, "tag": tag});
    Ok(input_for(
        claims,
        init_data,
        resource,
        allow_sim,
        allow_sample,
    ))
}

/// Builds the policy input with any `resource` value (null for certificates).
pub fn input_for(
    claims: &Value,
    init_data: &Value,
    resource: Value,
    allow_sim: bool,
    allow_sample: bool,
) -> Value {
    json!({
        "tee": claims.get("tee").cloned().unwrap_or(Value::Null),
        "claims": claims,
        "init_data": init_data,
        "resource": resource,
        "config": {"allow_sim": allow_sim, "allow_sample": allow_sample},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn rv() -> ReferenceValues {
        ReferenceValues {
            workload_digest: d('a'),
            launcher_digest: d('b'),
            signer: d('c'),
            resources: vec!["kbs:///app/key/image".into()],
        }
    }

    fn init() -> Value {
        json!({"workload_digest": d('a'), "launcher_digest": d('b'), "signer": d('c')})
    }

    fn claims(tee: &str, debug: bool) -> Value {
        json!({"tee": tee, "debug": debug})
    }

    fn allows(p: &Policy, c: Value, i: Value, uri: &str, allow_sim: bool) -> bool {
        p.allows(&input(&c, &i, uri, allow_sim, false).unwrap())
            .unwrap()
    }

    #[test]
    fn default_policy_allows_only_the_listed_workload() {
        let p = Policy::new(DEFAULT_POLICY, &[rv()]).unwrap();
        let uri = "kbs:///app/key/image";
        assert!(allows(&p, claims("snp", false), init(), uri, false));
        assert!(allows(&p, claims("sim", true), init(), uri, true));
        // Wrong workload digest.
        let mut i = init();
        i["workload_digest"] = d('f').into();
        assert!(!allows(&p, claims("snp", false), i, uri, false));
        // Wrong launcher.
        let mut i = init();
        i["launcher_digest"] = d('f').into();
        assert!(!allows(&p, claims("snp", false), i, uri, false));
        // Wrong signer.
        let mut i = init();
        i["signer"] = d('f').into();
        assert!(!allows(&p, claims("snp", false), i, uri, false));
        // Debug sim without allow_sim.
        assert!(!allows(&p, claims("sim", true), init(), uri, false));
        // Debug hardware, even with allow_sim.
        assert!(!allows(&p, claims("snp", true), init(), uri, true));
        // Resource not listed.
        assert!(!allows(
            &p,
            claims("snp", false),
            init(),
            "kbs:///app/key/other",
            false
        ));
        // No init data.
        assert!(!allows(&p, claims("snp", false), Value::Null, uri, false));
        // Certificates: known workload only.
        let ci = |i: Value| input_for(&claims("snp", false), &i, Value::Null, false, false);
        assert!(p.eval(ALLOW_CERT_RULE, &ci(init())).unwrap());
        let mut i = init();
        i["signer"] = d('f').into();
        assert!(!p.eval(ALLOW_CERT_RULE, &ci(i)).unwrap());
        // No reference values at all.
        let empty = Policy::new(DEFAULT_POLICY, &[]).unwrap();
        assert!(!allows(&empty, claims("snp", false), init(), uri, false));
    }

    #[test]
    fn custom_policies_are_checked() {
        assert!(Policy::new("package other\nallow := true", &[]).is_err());
        assert!(Policy::new("this is not rego", &[]).is_err());
        let p = Policy::new("package cocoon.kbs\nallow := true", &[]).unwrap();
        assert!(allows(
            &p,
            claims("sim", true),
            Value::Null,
            "kbs:///a/b/c",
            false
        ));
        p.replace(DEFAULT_POLICY, &[]).unwrap();
        assert!(!allows(
            &p,
            claims("sim", true),
            Value::Null,
            "kbs:///a/b/c",
            false
        ));
    }
}
