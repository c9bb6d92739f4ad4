//! `energyllm list`: every installed plugin, by kind.

use energyllm_core::registry::{list, ActuatorPlugin, EnginePlugin, PerfModelPlugin, Plugin, PolicyPlugin};

fn list_kind<P: Plugin>(out: &mut String) -> anyhow::Result<()> {
    use std::fmt::Write as _;
    let plugins = list::<P>()?;
    let _ = writeln!(out, "{}:", P::KIND);
    if plugins.is_empty() {
        let _ = writeln!(out, "  (none installed)");
    }
    for p in plugins {
        let _ = writeln!(out, "  {:<16} {}", p.name(), p.description());
    }
    Ok(())
}

/// What `energyllm list` prints: every installed plugin, by kind.
pub fn list_plugins() -> anyhow::Result<String> {
    energyllm_policy::link();
    let mut out = String::new();
    list_kind::<PolicyPlugin>(&mut out)?;
    list_kind::<ActuatorPlugin>(&mut out)?;
    list_kind::<EnginePlugin>(&mut out)?;
    list_kind::<PerfModelPlugin>(&mut out)?;
    Ok(out)
}
