//! Static master data: plants, suppliers, materials, parts, sub-assemblies, models,
//! distribution centres with their retailers, carriers and devices.

use crate::{DAY, HOUR};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Region {
    Cn,
    Eu,
    Na,
    Apac,
}

impl Region {
    pub(crate) fn currency(self) -> &'static str {
        match self {
            Region::Cn => "CNY",
            Region::Eu => "EUR",
            Region::Na => "USD",
            Region::Apac => "SGD",
        }
    }
    pub(crate) fn standard(self) -> &'static str {
        match self {
            Region::Cn => "GB 17761-2024",
            Region::Eu => "EN 15194:2017",
            Region::Na => "UL 2849",
            Region::Apac => "EN 15194:2017",
        }
    }
}

pub(crate) struct PlantDef {
    pub(crate) code: &'static str,
    pub(crate) city: &'static str,
    pub(crate) zh: &'static str,
    pub(crate) lat: &'static str,
    pub(crate) lon: &'static str,
    pub(crate) region: Region,
}

#[rustfmt::skip]
pub(crate) const PLANT_DEFS: [PlantDef; 8] = [
    PlantDef { code: "sh", city: "Shanghai", zh: "上海", lat: "31.2304", lon: "121.4737", region: Region::Cn },
    PlantDef { code: "hu", city: "Debrecen", zh: "", lat: "47.5316", lon: "21.6273", region: Region::Eu },
    PlantDef { code: "sz", city: "Shenzhen", zh: "深圳", lat: "22.5431", lon: "114.0579", region: Region::Cn },
    PlantDef { code: "mx", city: "Monterrey", zh: "", lat: "25.6866", lon: "-100.3161", region: Region::Na },
    PlantDef { code: "cq", city: "Chongqing", zh: "重庆", lat: "29.5630", lon: "106.5516", region: Region::Cn },
    PlantDef { code: "de", city: "Leipzig", zh: "", lat: "51.3397", lon: "12.3731", region: Region::Eu },
    PlantDef { code: "vn", city: "Hai Phong", zh: "", lat: "20.8449", lon: "106.6881", region: Region::Apac },
    PlantDef { code: "in", city: "Pune", zh: "", lat: "18.5204", lon: "73.8567", region: Region::Apac },
];

pub(crate) struct SupplierDef {
    pub(crate) id: &'static str,
    pub(crate) name: &'static str,
    pub(crate) lat: &'static str,
    pub(crate) lon: &'static str,
    pub(crate) region: Region,
    pub(crate) tz: i32,
    pub(crate) prefix: &'static str,
    pub(crate) indicator: u8,
    pub(crate) lot_prefix: &'static str,
    pub(crate) slash_lots: bool,
}

#[rustfmt::skip]
pub(crate) const SUPPLIER_DEFS: [SupplierDef; 16] = [
    SupplierDef { id: "sup-huaxin-steel", name: "Jiangsu Huaxin Special Steel Co., Ltd. (江苏华鑫特钢)", lat: "31.8755", lon: "120.5556", region: Region::Cn, tz: 480, prefix: "6923871", indicator: 0, lot_prefix: "HX", slash_lots: true },
    SupplierDef { id: "sup-donau-eband", name: "Donau Elektroband GmbH", lat: "48.3069", lon: "14.2858", region: Region::Eu, tz: 0, prefix: "9014456", indicator: 0, lot_prefix: "DE", slash_lots: false },
    SupplierDef { id: "sup-jintong-wire", name: "Ningbo Jintong Magnet Wire Co., Ltd.", lat: "29.8683", lon: "121.5440", region: Region::Cn, tz: 480, prefix: "6938120", indicator: 0, lot_prefix: "JT", slash_lots: false },
    SupplierDef { id: "sup-nordkupfer", name: "Nordkupfer Draht AG", lat: "53.5511", lon: "9.9937", region: Region::Eu, tz: 0, prefix: "4012877", indicator: 0, lot_prefix: "NK", slash_lots: false },
    SupplierDef { id: "sup-baotou-mag", name: "Baotou Xitu Magnetics Co., Ltd. (包头稀土磁材)", lat: "40.6574", lon: "109.8403", region: Region::Cn, tz: 480, prefix: "6941023", indicator: 0, lot_prefix: "BT", slash_lots: false },
    SupplierDef { id: "sup-ganzhou-mag", name: "Ganzhou Xinci Magnet Technology Co.", lat: "25.8311", lon: "114.9350", region: Region::Cn, tz: 480, prefix: "6957734", indicator: 0, lot_prefix: "GZ", slash_lots: false },
    SupplierDef { id: "sup-ruineng-cell", name: "Changzhou Ruineng Battery Co., Ltd.", lat: "31.8107", lon: "119.9741", region: Region::Cn, tz: 480, prefix: "6970045", indicator: 1, lot_prefix: "RN", slash_lots: false },
    SupplierDef { id: "sup-hanil-cell", name: "Hanil Energy Cell Co., Ltd.", lat: "36.7167", lon: "127.4333", region: Region::Apac, tz: 0, prefix: "8801234", indicator: 1, lot_prefix: "HE", slash_lots: false },
    SupplierDef { id: "sup-haolin-alu", name: "Foshan Haolin Aluminium Co., Ltd.", lat: "23.0215", lon: "113.1214", region: Region::Cn, tz: 480, prefix: "6929981", indicator: 0, lot_prefix: "HL", slash_lots: false },
    SupplierDef { id: "sup-alutubi", name: "Alutubi Bresciani S.p.A.", lat: "45.5416", lon: "10.2118", region: Region::Eu, tz: 0, prefix: "8034567", indicator: 0, lot_prefix: "AB", slash_lots: false },
    SupplierDef { id: "sup-kesheng-poly", name: "Xiamen Kesheng Polymer Co., Ltd.", lat: "24.4798", lon: "118.0894", region: Region::Cn, tz: 480, prefix: "6936652", indicator: 0, lot_prefix: "KS", slash_lots: false },
    SupplierDef { id: "sup-rheinplast", name: "Rheinplast Kunststoffe GmbH & Co. KG", lat: "49.4774", lon: "8.4452", region: Region::Eu, tz: 0, prefix: "4045678", indicator: 0, lot_prefix: "RP", slash_lots: false },
    SupplierDef { id: "sup-tianli-pcb", name: "Huizhou Tianli Circuit Co., Ltd.", lat: "23.1115", lon: "114.4152", region: Region::Cn, tz: 480, prefix: "6945501", indicator: 0, lot_prefix: "TL", slash_lots: false },
    SupplierDef { id: "sup-penang-pcb", name: "Penang Precision Boards Sdn. Bhd.", lat: "5.4164", lon: "100.3327", region: Region::Apac, tz: 480, prefix: "9555123", indicator: 0, lot_prefix: "PP", slash_lots: false },
    SupplierDef { id: "sup-huacai-coat", name: "Guangdong Huacai Powder Coatings Co., Ltd. (广东华彩粉末涂料)", lat: "22.5787", lon: "113.0819", region: Region::Cn, tz: 480, prefix: "6951187", indicator: 0, lot_prefix: "HC", slash_lots: false },
    SupplierDef { id: "sup-nordpulver", name: "Nordpulver Lackfabrik GmbH", lat: "52.3759", lon: "9.7320", region: Region::Eu, tz: 0, prefix: "4056731", indicator: 0, lot_prefix: "NP", slash_lots: false },
];

pub(crate) struct MaterialDef {
    pub(crate) name: &'static str,
    pub(crate) spec: &'static str,
    pub(crate) unit: &'static str,
    pub(crate) qty: (i64, i64),
    pub(crate) expiry_days: i64,
    pub(crate) standard: &'static str,
    pub(crate) suppliers: [usize; 2],
}

#[rustfmt::skip]
pub(crate) const MATERIALS: [MaterialDef; 8] = [
    MaterialDef { name: "Electrical steel coil", spec: "M270-35A, 0.35 mm", unit: "kg", qty: (4000, 9000), expiry_days: 0, standard: "GB/T 2521.1-2016", suppliers: [0, 1] },
    MaterialDef { name: "Enamelled copper wire", spec: "Class H, 0.90 mm", unit: "kg", qty: (300, 800), expiry_days: 0, standard: "IEC 60317-0-1", suppliers: [2, 3] },
    MaterialDef { name: "NdFeB magnet blocks", spec: "N42SH, Ni-Cu-Ni coated", unit: "kg", qty: (50, 200), expiry_days: 0, standard: "GB/T 13560-2017", suppliers: [4, 5] },
    MaterialDef { name: "Li-ion cells 21700", spec: "5000 mAh, 3.6 V", unit: "pcs", qty: (2000, 6000), expiry_days: 365, standard: "IEC 62133-2:2017", suppliers: [6, 7] },
    MaterialDef { name: "Aluminium alloy tube 6061-T6", spec: "38 x 2.0 mm", unit: "m", qty: (1200, 3000), expiry_days: 0, standard: "GB/T 6893-2022", suppliers: [8, 9] },
    MaterialDef { name: "PC/ABS resin pellets", spec: "UL94 V-0, black", unit: "kg", qty: (500, 1500), expiry_days: 540, standard: "ISO 19062-1", suppliers: [10, 11] },
    MaterialDef { name: "FR-4 PCB panels", spec: "4-layer, 1.6 mm, ENIG", unit: "pcs", qty: (400, 1200), expiry_days: 0, standard: "IPC-6012E", suppliers: [12, 13] },
    MaterialDef { name: "Polyester powder coating", spec: "RAL 9005 jet black, matt, TGIC-free", unit: "kg", qty: (4500, 6500), expiry_days: 365, standard: "GB/T 21776-2008", suppliers: [14, 15] },
];

/// The bulk material: powder coating (index into `MATERIALS`). A supplier batch is drawn
/// from over days: one batch per plant is open at the paint line at a time, and every frame
/// set coated meanwhile lists it as an input (see [`COAT_SUB`]).
pub(crate) const COAT: usize = 7;
/// The sub-assembly (index into `SUBS`) that is powder-coated after welding.
pub(crate) const COAT_SUB: usize = 2;
/// Powder used per frame set, in grams (sprayed, including unrecovered overspray).
pub(crate) const COAT_USE_G: (i64, i64) = (300, 420);
/// The next coating batch is ordered once the open one is down to this share (lead times
/// are at most about three days; a batch lasts four to eight).
pub(crate) const COAT_REORDER: f64 = 0.8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pattern {
    Split,
    Merge,
    Plain,
}

pub(crate) struct PartDef {
    pub(crate) name: &'static str,
    pub(crate) mat: usize,
    pub(crate) pattern: Pattern,
    pub(crate) line: usize,
    pub(crate) process: &'static str,
    pub(crate) device: &'static str,
}

#[rustfmt::skip]
pub(crate) const PARTS: [PartDef; 7] = [
    PartDef { name: "Stator lamination stack", mat: 0, pattern: Pattern::Split, line: 0, process: "stamping and stacking", device: "press-01" },
    PartDef { name: "Stator winding", mat: 1, pattern: Pattern::Plain, line: 0, process: "coil winding", device: "wind-01" },
    PartDef { name: "Rotor magnet set", mat: 2, pattern: Pattern::Split, line: 0, process: "magnet grinding and sorting", device: "mag-01" },
    PartDef { name: "Battery cell module 10S4P", mat: 3, pattern: Pattern::Merge, line: 1, process: "cell sorting and module welding", device: "laser-01" },
    PartDef { name: "Frame tube set", mat: 4, pattern: Pattern::Split, line: 2, process: "tube cutting and bending", device: "cnc-01" },
    PartDef { name: "Housing moulding", mat: 5, pattern: Pattern::Plain, line: 1, process: "injection moulding", device: "imm-01" },
    PartDef { name: "Controller PCB assembly", mat: 6, pattern: Pattern::Split, line: 3, process: "SMT placement and reflow", device: "reflow-01" },
];

pub(crate) struct SubDef {
    pub(crate) name: &'static str,
    pub(crate) parts: &'static [usize],
    pub(crate) line: usize,
    pub(crate) asm_device: &'static str,
    pub(crate) qc_device: &'static str,
}

#[rustfmt::skip]
pub(crate) const SUBS: [SubDef; 4] = [
    SubDef { name: "Drive unit 250 W", parts: &[0, 1, 2], line: 0, asm_device: "torque-01", qc_device: "motor-eol-01" },
    SubDef { name: "Battery pack 36 V 14 Ah", parts: &[3, 5, 6], line: 1, asm_device: "torque-01", qc_device: "bms-eol-01" },
    SubDef { name: "Frame set", parts: &[4], line: 2, asm_device: "weld-01", qc_device: "cmm-01" },
    SubDef { name: "Controller and display unit", parts: &[6, 5], line: 3, asm_device: "torque-02", qc_device: "ict-01" },
];

pub(crate) struct ModelDef {
    pub(crate) name: &'static str,
    pub(crate) spec: &'static str,
    pub(crate) prices: [u32; 4],
}

#[rustfmt::skip]
pub(crate) const MODELS: [ModelDef; 4] = [
    ModelDef { name: "ZQ City 500", spec: "28\" wheels, 250 W, 504 Wh", prices: [5999, 2499, 2799, 3299] },
    ModelDef { name: "ZQ Trail 750", spec: "29\" wheels, 250 W mid-drive, 756 Wh", prices: [8999, 3699, 3999, 4899] },
    ModelDef { name: "ZQ Cargo 900", spec: "20\"/26\" wheels, 250 W, 2 x 504 Wh", prices: [11999, 4999, 5499, 6499] },
    ModelDef { name: "ZQ Fold 360", spec: "20\" wheels, 250 W, 360 Wh", prices: [3999, 1699, 1899, 2299] },
];

/// Zhiqi Mobility's GS1 company prefix.
pub(crate) const OWN_PREFIX: &str = "6975412";

pub(crate) struct DcDef {
    pub(crate) id: &'static str,
    pub(crate) name: &'static str,
    pub(crate) lat: &'static str,
    pub(crate) lon: &'static str,
    pub(crate) region: Region,
    pub(crate) tz: i32,
    pub(crate) retailers: [(&'static str, &'static str, &'static str, &'static str); 3],
}

#[rustfmt::skip]
pub(crate) const DC_DEFS: [DcDef; 5] = [
    DcDef { id: "dc-cn-east", name: "Zhiqi East China DC (Kunshan)", lat: "31.3858", lon: "120.9807", region: Region::Cn, tz: 480, retailers: [
        ("rt-cn-jingan", "Jing'an E-Bike Center (静安电动车中心)", "31.2286", "121.4481"),
        ("rt-cn-westlake", "Hangzhou West Lake Cycles", "30.2741", "120.1551"),
        ("rt-cn-xinjiekou", "Nanjing Xinjiekou Bike Store", "32.0415", "118.7781"),
    ] },
    DcDef { id: "dc-cn-west", name: "Zhiqi West China DC (Chengdu)", lat: "30.5728", lon: "104.0668", region: Region::Cn, tz: 480, retailers: [
        ("rt-cn-panda", "Chengdu Panda Rides", "30.6586", "104.0648"),
        ("rt-cn-jiefangbei", "Chongqing Jiefangbei E-Bikes", "29.5576", "106.5770"),
        ("rt-cn-belltower", "Xi'an Bell Tower Cycles", "34.2612", "108.9423"),
    ] },
    DcDef { id: "dc-eu-venlo", name: "VeloTrade Europe B.V. (Venlo)", lat: "51.3704", lon: "6.1724", region: Region::Eu, tz: 0, retailers: [
        ("rt-de-kreuzberg", "Radhaus Kreuzberg", "52.4986", "13.4034"),
        ("rt-fr-bastille", "Vélo Électrique Bastille", "48.8532", "2.3691"),
        ("rt-de-ammarkt", "Rad & Tat \"Am Markt\"", "48.1372", "11.5756"),
    ] },
    DcDef { id: "dc-na-ontario", name: "Pacific E-Mobility Distribution Inc.", lat: "34.0633", lon: "-117.6509", region: Region::Na, tz: 0, retailers: [
        ("rt-us-pacificcoast", "Pacific Coast E-Bikes", "33.7701", "-118.1937"),
        ("rt-us-austin", "Austin Electric Cycles", "30.2672", "-97.7431"),
        ("rt-us-brooklyn", "Brooklyn Pedal Co.", "40.6782", "-73.9442"),
    ] },
    DcDef { id: "dc-sg-tuas", name: "Lion City Mobility Pte. Ltd.", lat: "1.3294", lon: "103.6467", region: Region::Apac, tz: 480, retailers: [
        ("rt-sg-lioncity", "Lion City Cycles", "1.3048", "103.8318"),
        ("rt-my-klride", "Kuala Lumpur E-Ride", "3.1390", "101.6869"),
        ("rt-th-bangkok", "Bangkok Smart Bikes", "13.7563", "100.5018"),
    ] },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Road,
    Rail,
    Sea,
    Air,
    Parcel,
}

impl Mode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Mode::Road => "road",
            Mode::Rail => "rail",
            Mode::Sea => "sea",
            Mode::Air => "air",
            Mode::Parcel => "parcel",
        }
    }
    /// Transit time range in ms.
    pub(crate) fn transit(self) -> (i64, i64) {
        match self {
            Mode::Road => (3 * HOUR, 16 * HOUR),
            Mode::Rail => (12 * DAY, 18 * DAY),
            Mode::Sea => (18 * DAY, 32 * DAY),
            Mode::Air => (20 * HOUR, 60 * HOUR),
            Mode::Parcel => (4 * HOUR, 30 * HOUR),
        }
    }
}

#[rustfmt::skip]
pub(crate) const CARRIER_DEFS: [(&str, &str, i32); 10] = [
    ("carrier-yangtze", "Yangtze Freight Logistics Co., Ltd. (长江货运)", 480),
    ("carrier-eurasia-rail", "EurAsia Rail Cargo LLP", 0),
    ("carrier-pacific-lines", "Pacific Ocean Lines Ltd.", 0),
    ("carrier-global-air", "Global Air Freight AG", 0),
    ("carrier-rheinmain", "Rhein-Main Spedition GmbH", 0),
    ("carrier-lonestar", "Lone Star Trucking LLC", 0),
    ("carrier-straits", "Straits Express Pte. Ltd.", 480),
    ("parcel-zhongshun", "Zhongshun Express (中顺快递)", 480),
    ("parcel-europarcel", "EuroParcel Logistics B.V.", 0),
    ("parcel-continental", "Continental Parcel Service Inc.", 0),
];

/// Index into `CARRIER_DEFS` and the mode for a shipment.
pub(crate) fn route(from: Region, to: Region, parcel: bool, raw: bool) -> (usize, Mode) {
    use Region::*;
    if parcel {
        return match to {
            Cn => (7, Mode::Parcel),
            Eu => (8, Mode::Parcel),
            Na => (9, Mode::Parcel),
            Apac => (6, Mode::Parcel),
        };
    }
    match (from, to) {
        (Cn, Cn) => (0, Mode::Road),
        (Eu, Eu) => (4, Mode::Road),
        (Na, Na) => (5, Mode::Road),
        (Apac, Apac) => (6, Mode::Road),
        _ if raw => (3, Mode::Air),
        (Cn, Eu) | (Eu, Cn) => (1, Mode::Rail),
        _ => (2, Mode::Sea),
    }
}

pub(crate) struct Reading {
    pub(crate) name: &'static str,
    pub(crate) base: f64,
    pub(crate) sd: f64,
    pub(crate) dec: u32,
    pub(crate) wear: f64,
}

const fn rd(name: &'static str, base: f64, sd: f64, dec: u32, wear: f64) -> Reading {
    Reading {
        name,
        base,
        sd,
        dec,
        wear,
    }
}

pub(crate) struct DevKind {
    pub(crate) tag: &'static str,
    pub(crate) readings: &'static [Reading],
    pub(crate) maint: &'static [&'static str],
}

#[rustfmt::skip]
pub(crate) const DEV_KINDS: [DevKind; 14] = [
    DevKind { tag: "wind", readings: &[rd("wire_tension_n", 2.8, 0.06, 2, 0.5), rd("spindle_rpm", 2400.0, 25.0, 0, 0.2), rd("motor_temp_c", 48.0, 1.2, 1, 1.0)], maint: &["wire guide replacement", "tension sensor calibration"] },
    DevKind { tag: "press", readings: &[rd("press_force_kn", 120.0, 1.5, 1, 0.4), rd("stroke_rate_spm", 45.0, 0.6, 0, 0.0), rd("oil_temp_c", 42.0, 0.9, 1, 1.0), rd("vibration_mm_s", 2.1, 0.15, 2, 1.5)], maint: &["die sharpening", "hydraulic oil change"] },
    DevKind { tag: "torque", readings: &[rd("torque_nm", 12.5, 0.12, 2, 0.6), rd("angle_deg", 185.0, 3.0, 1, 0.3)], maint: &["transducer calibration", "socket replacement"] },
    DevKind { tag: "motor-eol", readings: &[rd("torque_nm", 85.0, 0.9, 1, 0.3), rd("speed_rpm", 350.0, 4.0, 0, 0.0), rd("noise_db", 52.0, 0.8, 1, 1.2), rd("winding_temp_c", 40.0, 1.5, 1, 0.8)], maint: &["dynamometer calibration"] },
    DevKind { tag: "laser", readings: &[rd("laser_power_w", 1500.0, 12.0, 0, 0.6), rd("weld_depth_mm", 1.2, 0.025, 3, 0.8), rd("shield_gas_l_min", 18.0, 0.25, 1, 0.0)], maint: &["protective glass replacement", "beam alignment"] },
    DevKind { tag: "formation", readings: &[rd("cell_voltage_v", 3.65, 0.012, 3, 0.2), rd("current_a", 10.0, 0.08, 2, 0.0), rd("cell_temp_c", 29.0, 0.7, 1, 1.2)], maint: &["channel calibration", "contact pin replacement"] },
    DevKind { tag: "imm", readings: &[rd("barrel_temp_c", 245.0, 1.8, 1, 0.6), rd("injection_pressure_bar", 850.0, 9.0, 0, 0.8), rd("cycle_time_s", 38.0, 0.4, 1, 0.7)], maint: &["nozzle cleaning", "check ring replacement"] },
    DevKind { tag: "weld", readings: &[rd("current_a", 210.0, 4.0, 0, 0.5), rd("voltage_v", 24.5, 0.25, 1, 0.3), rd("wire_feed_m_min", 9.2, 0.08, 1, 0.6), rd("torch_temp_c", 65.0, 2.5, 1, 1.2)], maint: &["contact tip replacement", "torch cleaning", "TCP calibration"] },
    DevKind { tag: "cnc", readings: &[rd("spindle_rpm", 12000.0, 40.0, 0, 0.1), rd("vibration_mm_s", 1.8, 0.12, 2, 2.0), rd("spindle_temp_c", 38.0, 0.9, 1, 1.0)], maint: &["spindle bearing replacement", "tool changer lubrication"] },
    DevKind { tag: "oven", readings: &[rd("zone1_temp_c", 180.0, 1.2, 1, 0.8), rd("zone2_temp_c", 200.0, 1.2, 1, 0.8), rd("conveyor_m_min", 2.0, 0.015, 2, 0.4)], maint: &["burner service", "conveyor chain tensioning"] },
    DevKind { tag: "reflow", readings: &[rd("peak_temp_c", 245.0, 1.0, 1, 0.8), rd("conveyor_mm_s", 15.0, 0.1, 2, 0.3), rd("o2_ppm", 800.0, 40.0, 0, 1.0)], maint: &["flux filter replacement", "thermocouple calibration"] },
    DevKind { tag: "bike-eol", readings: &[rd("brake_force_n", 420.0, 8.0, 0, 0.4), rd("motor_power_w", 250.0, 3.0, 0, 0.3), rd("battery_voltage_v", 36.4, 0.15, 2, 0.2)], maint: &["roller dyno calibration"] },
    DevKind { tag: "comp", readings: &[rd("pressure_bar", 7.0, 0.06, 2, 0.5), rd("motor_temp_c", 68.0, 1.8, 1, 1.2), rd("flow_m3_min", 5.2, 0.08, 2, 0.6), rd("vibration_mm_s", 2.8, 0.2, 2, 2.0)], maint: &["air filter replacement", "oil separator replacement", "bearing replacement"] },
    DevKind { tag: "env", readings: &[rd("ambient_temp_c", 24.0, 1.0, 1, 0.0), rd("humidity_pct", 50.0, 4.0, 1, 0.0)], maint: &["sensor calibration"] },
];

/// (line index or 4 = utilities, kind index, instance number) of every telemetry device.
#[rustfmt::skip]
pub(crate) const PLANT_DEVICES: [(usize, usize, u8); 19] = [
    (0, 0, 1), (0, 1, 1), (0, 2, 1), (0, 3, 1),
    (1, 4, 1), (1, 5, 1), (1, 5, 2), (1, 6, 1),
    (2, 7, 1), (2, 7, 2), (2, 8, 1), (2, 9, 1),
    (3, 10, 1), (3, 2, 1), (3, 2, 2), (3, 11, 1),
    (4, 12, 1), (4, 12, 2), (4, 13, 1),
];

pub(crate) const ALNUM: &[u8; 34] = b"0123456789ABCDEFGHJKLMNPQRSTUVWXYZ";
