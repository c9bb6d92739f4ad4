//! Which GPU a config means: a CUDA index read through `CUDA_VISIBLE_DEVICES` and
//! `CUDA_DEVICE_ORDER` as CUDA reads them, or a GPU UUID; MIG instances are refused.

use energyllm_core::ActuatorError;

use super::{DeviceSelector, NvmlDeviceId};

/// One entry of `CUDA_VISIBLE_DEVICES`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Visible {
    Index(u32),
    Uuid(String),
    Mig(String),
}

/// Parses `CUDA_VISIBLE_DEVICES` as CUDA does: comma-separated entries, stopping at the first
/// one that is not a valid index, `GPU-` UUID (prefix) or `MIG-` instance.
fn parse_visible(value: &str, devices: &[NvmlDeviceId]) -> Vec<Visible> {
    let mut out = Vec::new();
    for entry in value.split(',').map(str::trim) {
        let parsed = if let Ok(i) = entry.parse::<u32>() {
            (usize::try_from(i).is_ok_and(|i| i < devices.len())).then_some(Visible::Index(i))
        } else if entry.starts_with("MIG-") {
            Some(Visible::Mig(entry.to_owned()))
        } else if entry.starts_with("GPU-") {
            Some(Visible::Uuid(entry.to_owned()))
        } else {
            None
        };
        match parsed {
            Some(v) => out.push(v),
            None => break,
        }
    }
    out
}

/// The CUDA index of the device at `pos` in `devices` under `CUDA_VISIBLE_DEVICES=visible`
/// (integer entries read in NVML order), or `None` if CUDA cannot see it.
pub(crate) fn cuda_index_of(visible: &str, devices: &[NvmlDeviceId], pos: usize) -> Option<usize> {
    parse_visible(visible, devices).iter().position(|v| match v {
        Visible::Index(i) => usize::try_from(*i).ok() == Some(pos),
        Visible::Uuid(u) => devices.get(pos).is_some_and(|d| d.uuid.starts_with(u.as_str())),
        Visible::Mig(_) => false,
    })
}

fn mig_refusal(what: &str) -> ActuatorError {
    ActuatorError::NotSupported(format!(
        "{what} is a MIG instance: its SM clock belongs to the whole GPU and is shared with every other instance, so \
         energyllm does not lock it; select a whole GPU (not in MIG mode)"
    ))
}

fn by_uuid(uuid: &str, devices: &[NvmlDeviceId]) -> Result<usize, ActuatorError> {
    let matches: Vec<usize> =
        devices.iter().enumerate().filter(|(_, d)| d.uuid.starts_with(uuid)).map(|(i, _)| i).collect();
    match matches.as_slice() {
        [one] => Ok(*one),
        [] => Err(ActuatorError::Backend(format!(
            "no GPU has UUID `{uuid}`; GPUs: {}",
            devices.iter().map(|d| format!("{} ({})", d.uuid, d.name)).collect::<Vec<_>>().join(", ")
        ))),
        _ => {
            Err(ActuatorError::Backend(format!("UUID prefix `{uuid}` matches several GPUs; give more of it")))
        }
    }
}

/// Which NVML device (position in `devices`) a selector means, given `CUDA_VISIBLE_DEVICES` and
/// `CUDA_DEVICE_ORDER`.
pub(super) fn resolve_device(
    selector: &DeviceSelector,
    cuda_visible: Option<&str>,
    cuda_order: Option<&str>,
    devices: &[NvmlDeviceId],
) -> Result<usize, ActuatorError> {
    let index = match selector {
        DeviceSelector::Index(i) => *i,
        DeviceSelector::Name(s) if s.trim().parse::<u32>().is_ok() => {
            s.trim().parse::<u32>().unwrap_or_default()
        }
        DeviceSelector::Name(s) if s.starts_with("MIG-") => return Err(mig_refusal(s)),
        DeviceSelector::Name(s) if s.starts_with("GPU-") => return by_uuid(s, devices),
        DeviceSelector::Name(s) => {
            return Err(ActuatorError::Backend(format!(
                "device `{s}` is neither a CUDA index nor a GPU UUID (`GPU-…`, see `nvidia-smi -L`)"
            )))
        }
    };
    // CUDA numbers GPUs fastest first unless told PCI order; NVML always uses PCI order. The two
    // agree when all GPUs are the same model.
    let same_model = devices.windows(2).all(|w| w[0].name == w[1].name);
    let pci_order = cuda_order.is_some_and(|o| o.trim() == "PCI_BUS_ID");
    let check_integer_order = || {
        if same_model || pci_order {
            Ok(())
        } else {
            Err(ActuatorError::Backend(
                "CUDA and NVML may number these GPUs differently (they are of different models and \
                 CUDA_DEVICE_ORDER is not PCI_BUS_ID): set CUDA_DEVICE_ORDER=PCI_BUS_ID, or name the GPU by UUID"
                    .into(),
            ))
        }
    };
    let Some(visible) = cuda_visible else {
        check_integer_order()?;
        return usize::try_from(index).ok().filter(|i| *i < devices.len()).ok_or_else(|| {
            ActuatorError::Backend(format!(
                "there is no CUDA device {index}: NVML sees {} GPU(s)",
                devices.len()
            ))
        });
    };
    let list = parse_visible(visible, devices);
    let entry = usize::try_from(index).ok().and_then(|i| list.get(i)).ok_or_else(|| {
        ActuatorError::Backend(format!(
            "CUDA device {index} does not exist: CUDA_VISIBLE_DEVICES=`{visible}` makes {} device(s) visible",
            list.len()
        ))
    })?;
    match entry {
        Visible::Index(i) => {
            check_integer_order()?;
            usize::try_from(*i)
                .map_err(|_| ActuatorError::Backend(format!("CUDA device {i} is out of range")))
        }
        Visible::Uuid(u) => by_uuid(u, devices),
        Visible::Mig(m) => Err(mig_refusal(m)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(names: &[&str]) -> Vec<NvmlDeviceId> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| NvmlDeviceId {
                index: i as u32,
                uuid: format!("GPU-{i}{i}aa-{i}"),
                name: (*n).into(),
            })
            .collect()
    }

    #[test]
    fn cuda_visible_devices_maps_cuda_indices_to_nvml_devices() {
        let d = ids(&["A100", "A100", "A100", "A100"]);
        let idx = DeviceSelector::Index;
        assert_eq!(resolve_device(&idx(1), None, None, &d).unwrap(), 1);
        assert_eq!(resolve_device(&idx(0), Some("2,3"), None, &d).unwrap(), 2);
        assert_eq!(resolve_device(&idx(1), Some("2, 3"), None, &d).unwrap(), 3);
        assert_eq!(resolve_device(&DeviceSelector::Name("1".into()), Some("3,0"), None, &d).unwrap(), 0);
        assert_eq!(resolve_device(&idx(0), Some("GPU-22"), None, &d).unwrap(), 2);
        // Parsing stops at the first bad entry, like CUDA.
        let e = resolve_device(&idx(1), Some("1,9,2"), None, &d).unwrap_err().to_string();
        assert!(e.contains("makes 1 device(s) visible"), "{e}");
        assert!(resolve_device(&idx(0), Some("-1"), None, &d).is_err());
        assert!(resolve_device(&idx(0), Some(""), None, &d).is_err());
        assert!(resolve_device(&idx(4), None, None, &d).unwrap_err().to_string().contains("4 GPU(s)"));
    }

    #[test]
    fn cuda_indices_of_nvml_devices() {
        let d = ids(&["A100", "A100", "A100"]);
        assert_eq!(cuda_index_of("2,GPU-00", &d, 0), Some(1));
        assert_eq!(cuda_index_of("2,GPU-00", &d, 2), Some(0));
        assert_eq!(cuda_index_of("2,GPU-00", &d, 1), None);
        assert_eq!(cuda_index_of("x,0", &d, 0), None);
    }

    #[test]
    fn uuids_select_directly_and_mig_instances_are_refused() {
        let d = ids(&["A100", "H100"]);
        assert_eq!(
            resolve_device(&DeviceSelector::Name("GPU-11aa-1".into()), Some("0"), None, &d).unwrap(),
            1
        );
        let e = resolve_device(&DeviceSelector::Name("GPU-".into()), None, None, &d).unwrap_err().to_string();
        assert!(e.contains("several"), "{e}");
        let e =
            resolve_device(&DeviceSelector::Name("GPU-ff".into()), None, None, &d).unwrap_err().to_string();
        assert!(e.contains("GPU-00aa-0 (A100)"), "{e}");
        for (sel, vis) in [("MIG-abc", None), ("0", Some("MIG-1c2d"))] {
            let e = resolve_device(&DeviceSelector::Name(sel.into()), vis, None, &d).unwrap_err();
            assert!(matches!(&e, ActuatorError::NotSupported(m) if m.contains("MIG instance")), "{e}");
        }
        assert!(resolve_device(&DeviceSelector::Name("fastest".into()), None, None, &d).is_err());
    }

    #[test]
    fn integer_indices_over_mixed_models_need_pci_order() {
        let d = ids(&["A100", "H100"]);
        let e = resolve_device(&DeviceSelector::Index(0), None, None, &d).unwrap_err().to_string();
        assert!(e.contains("CUDA_DEVICE_ORDER=PCI_BUS_ID"), "{e}");
        assert_eq!(resolve_device(&DeviceSelector::Index(1), None, Some("PCI_BUS_ID"), &d).unwrap(), 1);
        assert_eq!(resolve_device(&DeviceSelector::Index(0), Some("GPU-11"), None, &d).unwrap(), 1);
    }
}
