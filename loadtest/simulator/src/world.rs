//! World: everything derived from the tables once, with pre-rendered JSON fragments.

use crate::format::{push_json_str, push_padded};
use crate::gs1_check_digit;
use crate::master::{
    CARRIER_DEFS, DC_DEFS, DEV_KINDS, MODELS, OWN_PREFIX, PARTS, PLANT_DEFS, PLANT_DEVICES, Region,
    SUBS, SUPPLIER_DEFS,
};

#[derive(Debug)]
pub(crate) struct Party {
    pub(crate) id: String,
    /// `{"id":..,"name":..,"role":..}`
    pub(crate) frag: String,
    /// `{"lat":..,"lon":..}` (empty when the party has no fixed place)
    pub(crate) loc: String,
    pub(crate) tz: i32,
    pub(crate) secs: bool,
    pub(crate) region: Region,
}

#[derive(Debug)]
pub(crate) struct Gtin {
    pub(crate) g14: String,
    /// The GTIN-13 form when the GTIN-14 starts with 0.
    pub(crate) g13: Option<String>,
}

impl Gtin {
    pub(crate) fn new(indicator: u8, prefix: &str, item: u32) -> Self {
        let mut body = String::with_capacity(14);
        body.push((b'0' + indicator % 10) as char);
        body.push_str(prefix);
        push_padded(&mut body, u64::from(item), 12 - prefix.len());
        let check = gs1_check_digit(&body);
        body.push((b'0' + check) as char);
        let g13 = (indicator == 0).then(|| body[1..].to_string());
        Gtin { g14: body, g13 }
    }
}

#[derive(Debug)]
pub(crate) struct PlantW {
    pub(crate) id: String,
    /// e.g. `sh01`, used in device ids and lots.
    pub(crate) code: String,
    pub(crate) no: usize,
    pub(crate) region: Region,
    pub(crate) mfr: usize,
    pub(crate) asm: usize,
    pub(crate) wh: usize,
    pub(crate) iqc: usize,
    pub(crate) mnt: usize,
    pub(crate) lines: [String; 4],
    pub(crate) raw_wh: String,
    pub(crate) fg_wh: String,
    pub(crate) dc_choices: &'static [usize],
}

#[derive(Debug)]
pub(crate) struct Device {
    pub(crate) id: String,
    pub(crate) site: String,
    pub(crate) kind: usize,
    pub(crate) plant: usize,
}

#[derive(Debug)]
pub(crate) struct DcW {
    pub(crate) party: usize,
    pub(crate) retailers: [usize; 3],
}

#[derive(Debug)]
pub(crate) struct World {
    pub(crate) parties: Vec<Party>,
    pub(crate) plants: Vec<PlantW>,
    /// Party index of each supplier in `SUPPLIER_DEFS` order.
    pub(crate) suppliers: Vec<usize>,
    pub(crate) supplier_gtin: Vec<Gtin>,
    pub(crate) part_gtin: Vec<Gtin>,
    pub(crate) sub_gtin: Vec<Gtin>,
    pub(crate) model_gtin: Vec<Gtin>,
    pub(crate) dcs: Vec<DcW>,
    pub(crate) carriers: Vec<usize>,
    pub(crate) devices: Vec<Device>,
}

const DC_CN: &[usize] = &[0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 4, 4];
const DC_EU: &[usize] = &[2, 2, 2, 2, 2, 2, 3];
const DC_NA: &[usize] = &[3, 3, 3, 3, 3, 3, 3, 3, 3, 2];
const DC_APAC: &[usize] = &[4, 4, 4, 4, 4, 4, 2, 2, 3, 3];

#[allow(clippy::too_many_arguments)] // one call per kind of party, all different
pub(crate) fn party(
    parties: &mut Vec<Party>,
    id: &str,
    name: Option<&str>,
    role: &str,
    loc: Option<(&str, &str)>,
    tz: i32,
    secs: bool,
    region: Region,
) -> usize {
    let mut frag = String::with_capacity(96);
    frag.push_str("{\"id\":");
    push_json_str(&mut frag, id);
    if let Some(n) = name {
        frag.push_str(",\"name\":");
        push_json_str(&mut frag, n);
    }
    frag.push_str(",\"role\":\"");
    frag.push_str(role);
    frag.push_str("\"}");
    let loc = match loc {
        Some((lat, lon)) => format!("{{\"lat\":{lat},\"lon\":{lon}}}"),
        None => String::new(),
    };
    parties.push(Party {
        id: id.to_string(),
        frag,
        loc,
        tz,
        secs,
        region,
    });
    parties.len() - 1
}

const CN_NUM: [&str; 10] = ["一", "二", "三", "四", "五", "六", "七", "八", "九", "十"];

impl World {
    pub(crate) fn build(n_plants: usize) -> Self {
        let mut parties = Vec::new();
        let mut plants = Vec::with_capacity(n_plants);
        let mut devices = Vec::new();
        for i in 0..n_plants {
            let def = &PLANT_DEFS[i % PLANT_DEFS.len()];
            let no = i + 1;
            let id = format!("plant-{}-{:02}", def.code, no);
            let code = format!("{}{:02}", def.code, no);
            let mut name = format!("{} Plant {}", def.city, no);
            if !def.zh.is_empty() {
                name.push_str(" (");
                name.push_str(def.zh);
                match CN_NUM.get(i) {
                    Some(n) => name.push_str(n),
                    None => name.push_str(&no.to_string()),
                }
                name.push_str("厂)");
            }
            let (tz, loc) = (
                if def.region == Region::Cn { 480 } else { 0 },
                Some((def.lat, def.lon)),
            );
            let r = def.region;
            // The plant's own participants share its location, time zone and region.
            let mut plant_party = |pid: &str, pname: &str, role: &str| {
                party(&mut parties, pid, Some(pname), role, loc, tz, false, r)
            };
            let mfr = plant_party(&id, &name, "manufacturer");
            let asm = plant_party(&id, &name, "assembler");
            let wh = plant_party(
                &format!("{id}-wh"),
                &format!("{name} Warehouse"),
                "warehouse",
            );
            let iqc = plant_party(
                &format!("{id}-iqc"),
                &format!("{name} Incoming Quality Control"),
                "inspector",
            );
            let mnt = plant_party(
                &format!("{id}-mnt"),
                &format!("{name} Maintenance"),
                "maintainer",
            );
            let lines = [1, 2, 3, 4].map(|l| format!("{id}/line-{l}"));
            for &(line, kind, inst) in &PLANT_DEVICES {
                let (lseg, site) = if line < 4 {
                    (format!("l{}", line + 1), lines[line].clone())
                } else {
                    ("ut".to_string(), format!("{id}/utilities"))
                };
                devices.push(Device {
                    id: format!("{code}-{lseg}-{}-{:02}", DEV_KINDS[kind].tag, inst),
                    site,
                    kind,
                    plant: i,
                });
            }
            plants.push(PlantW {
                raw_wh: format!("{id}/raw-wh"),
                fg_wh: format!("{id}/fg-wh"),
                id,
                code,
                no,
                region: def.region,
                mfr,
                asm,
                wh,
                iqc,
                mnt,
                lines,
                dc_choices: match def.region {
                    Region::Cn => DC_CN,
                    Region::Eu => DC_EU,
                    Region::Na => DC_NA,
                    Region::Apac => DC_APAC,
                },
            });
        }
        let mut suppliers = Vec::new();
        let mut supplier_gtin = Vec::new();
        for (s, d) in SUPPLIER_DEFS.iter().enumerate() {
            suppliers.push(party(
                &mut parties,
                d.id,
                Some(d.name),
                "supplier",
                Some((d.lat, d.lon)),
                d.tz,
                true,
                d.region,
            ));
            supplier_gtin.push(Gtin::new(d.indicator, d.prefix, 10_000 + s as u32 * 17));
        }
        let mut dcs = Vec::new();
        for d in &DC_DEFS {
            let p = party(
                &mut parties,
                d.id,
                Some(d.name),
                "distributor",
                Some((d.lat, d.lon)),
                d.tz,
                true,
                d.region,
            );
            let retailers = d.retailers.map(|(id, name, lat, lon)| {
                let tz = if matches!(id.as_bytes().get(3..5), Some(b"cn" | b"sg" | b"my")) {
                    480
                } else {
                    0
                };
                party(
                    &mut parties,
                    id,
                    Some(name),
                    "retailer",
                    Some((lat, lon)),
                    tz,
                    true,
                    d.region,
                )
            });
            dcs.push(DcW {
                party: p,
                retailers,
            });
        }
        let carriers = CARRIER_DEFS
            .iter()
            .map(|(id, name, tz)| {
                party(
                    &mut parties,
                    id,
                    Some(name),
                    "carrier",
                    None,
                    *tz,
                    true,
                    Region::Cn,
                )
            })
            .collect();
        World {
            parties,
            plants,
            suppliers,
            supplier_gtin,
            part_gtin: (0..PARTS.len() as u32)
                .map(|i| Gtin::new(0, OWN_PREFIX, 10_100 + i))
                .collect(),
            sub_gtin: (0..SUBS.len() as u32)
                .map(|i| Gtin::new(0, OWN_PREFIX, 10_200 + i))
                .collect(),
            model_gtin: (0..MODELS.len() as u32)
                .map(|i| Gtin::new(0, OWN_PREFIX, 10_300 + i))
                .collect(),
            dcs,
            carriers,
            devices,
        }
    }
}
