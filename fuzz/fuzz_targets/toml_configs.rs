//! The TOML files users write: GPU and model profiles, routing configs, the clock daemon's
//! config.
#![no_main]
use energyllm_engines::ModelSpec;
use energyllm_hw::GpuSpec;
use energyllm_hwd::config::DaemonConfig;
use energyllm_models::RouteConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = GpuSpec::from_toml(text, "fuzz");
    let _ = ModelSpec::from_toml(text, "fuzz");
    if let Ok(c) = toml::from_str::<RouteConfig>(text) {
        let _ = c.validate();
    }
    let _ = DaemonConfig::parse(text);
});
