//! JSON text laid out byte for byte as nbformat writes it: Python's `json.dumps` with
//! `indent=1, sort_keys=True, ensure_ascii=False`, so a notebook exported by inloop and saved by
//! Jupyter give the same file and no spurious diff.

use std::io;

use serde::Serialize;
use serde_json::Value;
use serde_json::ser::{Formatter, PrettyFormatter};

/// `value` as nbformat would write it, with the trailing newline nbformat adds.
pub(crate) fn to_string(value: &Value) -> String {
    let mut out = Vec::with_capacity(64 * 1024);
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, PythonFormatter::new());
    // A `Value` holds only strings, numbers and containers: serializing it into memory cannot fail.
    if value.serialize(&mut serializer).is_err() {
        unreachable!("serializing a JSON value into memory failed");
    }
    out.push(b'\n');
    // serde_json writes valid UTF-8 from a `Value`.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Python's `repr(float)`: the shortest digits that read back to the same float, in fixed
/// notation when the decimal exponent is in -4..16 (`0.0001`, `1e+16`), always with a fraction
/// or an exponent so the value reads back as a float (`1.0`, `1e-05`).
pub(crate) fn python_float_repr(value: f64) -> String {
    // Rust's `{:e}` and `{}` print the same shortest round-trip digits Python's repr does.
    let scientific = format!("{value:e}");
    let Some((mantissa, exponent)) = scientific.split_once('e') else {
        return scientific; // inf and NaN, which JSON values cannot hold
    };
    let exponent: i32 = exponent.parse().unwrap_or_default();
    if (-4..16).contains(&exponent) {
        let fixed = value.to_string();
        if fixed.contains('.') {
            fixed
        } else {
            fixed + ".0"
        }
    } else {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.unsigned_abs())
    }
}

/// A one-space pretty printer whose floats follow [`python_float_repr`].
struct PythonFormatter(PrettyFormatter<'static>);

impl PythonFormatter {
    fn new() -> Self {
        Self(PrettyFormatter::with_indent(b" "))
    }
}

impl Formatter for PythonFormatter {
    fn write_f64<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f64) -> io::Result<()> {
        writer.write_all(python_float_repr(value).as_bytes())
    }

    // The layout is the pretty printer's.
    fn begin_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_array(writer)
    }
    fn end_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_array(writer)
    }
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_array_value(writer, first)
    }
    fn end_array_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_array_value(writer)
    }
    fn begin_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_object(writer)
    }
    fn end_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_object(writer)
    }
    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_object_key(writer, first)
    }
    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_object_value(writer)
    }
    fn end_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_object_value(writer)
    }
}

#[cfg(test)]
mod tests {
    use super::python_float_repr;

    #[test]
    fn floats_print_like_python_repr() {
        // Each pair is `repr(float(x))` in CPython 3.
        for (value, python) in [
            (1.0, "1.0"),
            (-0.0, "-0.0"),
            (0.5, "0.5"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (123456.789, "123456.789"),
            (1e15, "1000000000000000.0"),
            (9999999999999998.0, "9999999999999998.0"),
            (1e16, "1e+16"),
            (6.02e23, "6.02e+23"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            (0.1 + 0.2, "0.30000000000000004"),
        ] {
            assert_eq!(python_float_repr(value), python, "{value:?}");
        }
    }
}
