//! The AMD actuator against a fake amdgpu sysfs tree in a temp dir.

#![cfg(feature = "amd")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

use std::path::Path;
use std::sync::Arc;

use energyllm_core::registry::{find, ActuatorPlugin};
use energyllm_core::{ActuatorError, FrequencyActuator, Mhz, Timestamp};
use energyllm_hw::amd::fake::{FakeAmdgpu, FakeCardSpec, FakeDevice};
use energyllm_hw::amd::{list_cards, AmdConfig, AmdGpu, AmdMode, CardSelector};
use energyllm_hw::telemetry::{read_actuator, TelemetryLog};

fn config(root: &Path) -> AmdConfig {
    AmdConfig { sysfs_root: root.to_owned(), ..AmdConfig::default() }
}

fn open(root: &Path) -> AmdGpu {
    AmdGpu::open_with_writer(&config(root), Arc::new(FakeAmdgpu)).unwrap()
}

#[test]
fn discrete_levels_are_forced_in_manual_and_auto_is_restored() {
    let dir = tempfile::tempdir().unwrap();
    let dev = FakeDevice::create(dir.path(), 0, &FakeCardSpec::discrete()).unwrap();
    let mut gpu = open(dir.path());
    assert_eq!(gpu.mode(), AmdMode::Levels);
    let levels = [852, 991, 1138, 1269, 1312, 1474, 1538, 1590].map(Mhz);
    assert_eq!(gpu.supported_frequencies().unwrap(), levels);
    assert_eq!(gpu.current_frequency().unwrap(), Mhz(852));
    assert_eq!(gpu.performance_level().unwrap(), "auto");

    gpu.set_frequency(Mhz(1269)).unwrap();
    assert_eq!(dev.performance_level().unwrap(), "manual");
    assert_eq!(dev.active_sclk_mhz().unwrap(), Some(1269));
    assert_eq!(gpu.current_frequency().unwrap(), Mhz(1269));
    // Already manual: the second change writes only the level.
    gpu.set_frequency(Mhz(1590)).unwrap();

    let e = gpu.set_frequency(Mhz(1000)).unwrap_err();
    assert!(matches!(e, ActuatorError::UnsupportedClock { .. }));
    assert!(e.to_string().contains("852, 991, 1138"), "{e}");

    gpu.reset().unwrap();
    assert_eq!(dev.performance_level().unwrap(), "auto");
    assert_eq!(dev.active_sclk_mhz().unwrap(), Some(852));
    assert_eq!(
        dev.writes().unwrap(),
        [
            "power_dpm_force_performance_level: manual",
            "pp_dpm_sclk: 3",
            "pp_dpm_sclk: 7",
            "power_dpm_force_performance_level: auto"
        ]
    );
    gpu.reset().unwrap(); // any number of times
}

#[test]
fn fine_grained_cards_lock_the_overdrive_range_and_reset_it() {
    let dir = tempfile::tempdir().unwrap();
    let dev = FakeDevice::create(dir.path(), 0, &FakeCardSpec::fine_grained()).unwrap();
    let mut gpu = open(dir.path());
    assert_eq!(gpu.mode(), AmdMode::Overdrive);
    let clocks = gpu.supported_frequencies().unwrap();
    assert_eq!(clocks.first(), Some(&Mhz(500)));
    assert_eq!(clocks.last(), Some(&Mhz(2100)), "never above the stock maximum");
    assert!(clocks.contains(&Mhz(1500)) && clocks.contains(&Mhz(525)) && !clocks.contains(&Mhz(510)));

    gpu.set_frequency(Mhz(1500)).unwrap();
    assert_eq!(dev.od_sclk_mhz().unwrap(), Some((1500, 1500)));
    assert_eq!(gpu.current_frequency().unwrap(), Mhz(1500));
    // Going up: the max moves first so that min ≤ max holds after every command.
    gpu.set_frequency(Mhz(2000)).unwrap();
    assert_eq!(dev.od_sclk_mhz().unwrap(), Some((2000, 2000)));
    gpu.set_frequency(Mhz(700)).unwrap();
    assert_eq!(gpu.current_frequency().unwrap(), Mhz(700));

    gpu.reset().unwrap();
    assert_eq!(dev.performance_level().unwrap(), "auto");
    assert_eq!(dev.od_sclk_mhz().unwrap(), Some((500, 2100)));
    let od: Vec<String> = dev.writes().unwrap().into_iter().filter(|w| w.starts_with("pp_od")).collect();
    assert_eq!(
        od,
        [
            "pp_od_clk_voltage: s 0 1500",
            "pp_od_clk_voltage: s 1 1500",
            "pp_od_clk_voltage: c",
            "pp_od_clk_voltage: s 1 2000",
            "pp_od_clk_voltage: s 0 2000",
            "pp_od_clk_voltage: c",
            "pp_od_clk_voltage: s 0 700",
            "pp_od_clk_voltage: s 1 700",
            "pp_od_clk_voltage: c",
            "pp_od_clk_voltage: r",
            "pp_od_clk_voltage: c"
        ]
    );
}

#[test]
fn modes_can_be_forced_and_overdrive_is_refused_clearly_where_absent() {
    let dir = tempfile::tempdir().unwrap();
    FakeDevice::create(dir.path(), 0, &FakeCardSpec::fine_grained()).unwrap();
    FakeDevice::create(dir.path(), 1, &FakeCardSpec::discrete()).unwrap();
    let levels = AmdConfig { mode: AmdMode::Levels, ..config(dir.path()) };
    let gpu = AmdGpu::open_with_writer(&levels, Arc::new(FakeAmdgpu)).unwrap();
    assert_eq!(gpu.supported_frequencies().unwrap(), [Mhz(500), Mhz(2100)]);

    let od =
        AmdConfig { mode: AmdMode::Overdrive, card: Some(CardSelector::Number(1)), ..config(dir.path()) };
    let e = AmdGpu::open_with_writer(&od, Arc::new(FakeAmdgpu)).unwrap_err().to_string();
    assert!(e.contains("card1") && e.contains("amdgpu.ppfeaturemask") && e.contains("levels"), "{e}");
}

#[test]
fn cards_are_found_by_name_number_or_pci_slot_and_others_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    FakeDevice::create(dir.path(), 1, &FakeCardSpec::discrete()).unwrap();
    FakeDevice::create(dir.path(), 2, &FakeCardSpec::fine_grained()).unwrap();
    // An Intel card and a connector entry.
    let intel = dir.path().join("card0/device");
    std::fs::create_dir_all(&intel).unwrap();
    std::fs::write(intel.join("uevent"), "DRIVER=i915\nPCI_SLOT_NAME=0000:00:02.0\n").unwrap();
    std::fs::create_dir_all(dir.path().join("card1-DP-1")).unwrap();

    let cards = list_cards(dir.path()).unwrap();
    assert_eq!(cards.iter().map(|c| c.card.as_str()).collect::<Vec<_>>(), ["card1", "card2"]);
    assert_eq!(cards[1].pci_slot.as_deref(), Some("0000:03:00.0"));
    assert_eq!(open(dir.path()).card(), "card1");
    for sel in [
        CardSelector::Number(2),
        CardSelector::Name("card2".into()),
        CardSelector::Name("0000:03:00.0".into()),
    ] {
        let c = AmdConfig { card: Some(sel), ..config(dir.path()) };
        assert_eq!(AmdGpu::open_with_writer(&c, Arc::new(FakeAmdgpu)).unwrap().card(), "card2");
    }
    let c = AmdConfig { card: Some(CardSelector::Number(7)), ..config(dir.path()) };
    let e = AmdGpu::open_with_writer(&c, Arc::new(FakeAmdgpu)).unwrap_err().to_string();
    assert!(e.contains("card7") && e.contains("found: card1, card2"), "{e}");

    let empty = tempfile::tempdir().unwrap();
    let e = AmdGpu::open_with_writer(&config(empty.path()), Arc::new(FakeAmdgpu)).unwrap_err();
    assert!(matches!(e, ActuatorError::NotInstalled(_)), "{e}");
    assert!(list_cards(&empty.path().join("nope")).unwrap().is_empty());
}

#[test]
fn permission_and_lost_device_errors_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let dev = FakeDevice::create(dir.path(), 0, &FakeCardSpec::discrete()).unwrap();
    let mut gpu = open(dir.path());
    dev.deny_writes(true).unwrap();
    let e = gpu.check_write_access().unwrap_err();
    assert!(matches!(e, ActuatorError::PermissionDenied(_)));
    let e = gpu.set_frequency(Mhz(991)).unwrap_err();
    assert!(
        matches!(&e, ActuatorError::PermissionDenied(m) if m.contains("root") && m.contains("udev")),
        "{e}"
    );
    dev.deny_writes(false).unwrap();
    gpu.check_write_access().unwrap();

    gpu.set_frequency(Mhz(991)).unwrap();
    std::fs::remove_dir_all(dir.path().join("card0")).unwrap();
    let e = gpu.set_frequency(Mhz(852)).unwrap_err();
    assert!(matches!(&e, ActuatorError::DeviceLost(m) if m.contains("dmesg")), "{e}");
    assert!(matches!(gpu.reset(), Err(ActuatorError::DeviceLost(_))));
}

#[test]
fn the_driver_refusing_a_level_outside_manual_is_reported() {
    // Someone puts the card back to auto behind our back; a level write must then fail loudly
    // rather than look applied. Forcing manual first is the actuator's job, so go around it.
    let dir = tempfile::tempdir().unwrap();
    let dev = FakeDevice::create(dir.path(), 0, &FakeCardSpec::discrete()).unwrap();
    use energyllm_hw::amd::SysfsWriter as _;
    let e = FakeAmdgpu.write(&dev.device_dir.join("pp_dpm_sclk"), "2").unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    let e = FakeAmdgpu.write(&dev.device_dir.join("pp_od_clk_voltage"), "s 0 900").unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
}

#[test]
fn dropping_the_actuator_restores_auto() {
    let dir = tempfile::tempdir().unwrap();
    let dev = FakeDevice::create(dir.path(), 0, &FakeCardSpec::fine_grained()).unwrap();
    {
        let mut gpu = open(dir.path());
        gpu.set_frequency(Mhz(800)).unwrap();
        assert_eq!(dev.performance_level().unwrap(), "manual");
    }
    assert_eq!(dev.performance_level().unwrap(), "auto");
    assert_eq!(dev.od_sclk_mhz().unwrap(), Some((500, 2100)));
}

#[test]
fn hwmon_power_is_read_in_watts_and_integrated_into_energy() {
    let dir = tempfile::tempdir().unwrap();
    let dev = FakeDevice::create(dir.path(), 0, &FakeCardSpec::discrete()).unwrap();
    let gpu = open(dir.path());
    assert_eq!(gpu.power_w().unwrap(), 35.0);
    assert_eq!(gpu.energy_j().unwrap(), None);
    let mut log = TelemetryLog::new();
    for (t, uw) in [(0.0, 100_000_000), (1.0, 200_000_000), (2.0, 200_000_000), (4.0, 50_000_000)] {
        dev.set_power_uw(uw).unwrap();
        let reading = read_actuator(&gpu).unwrap();
        assert_eq!(reading.freq, Some(Mhz(852)));
        log.record(Timestamp::from_secs_f64(t), reading).unwrap();
    }
    // 150 + 200 + 250 J by trapezoids.
    assert!((log.energy_j() - 600.0).abs() < 1e-9, "{}", log.energy_j());

    let dir2 = tempfile::tempdir().unwrap();
    FakeDevice::create(dir2.path(), 0, &FakeCardSpec::fine_grained()).unwrap(); // power1_input
    assert_eq!(open(dir2.path()).power_w().unwrap(), 60.0);
}

#[test]
fn the_plugin_builds_from_config_and_rejects_unknown_fields() {
    let p = find::<ActuatorPlugin>("amd").unwrap();
    let empty = tempfile::tempdir().unwrap();
    let cfg = serde_json::json!({ "sysfs_root": empty.path(), "card": 3, "mode": "levels" });
    let e = (p.build)(&cfg).err().unwrap().to_string();
    assert!(e.contains("card3"), "{e}");
    let e = (p.build)(&serde_json::json!({ "cards": 1 })).err().unwrap().to_string();
    assert!(e.contains("cards"), "{e}");
}
