// A strict reader of the Prometheus text exposition format 0.0.4, for value
// assertions in tests. Format validity itself is checked by promtool (the
// reference implementation's parser and linter); this reader refuses any
// line it does not fully understand, so a malformed exposition fails loudly.

use std::collections::BTreeMap;

#[allow(dead_code, unreachable_pub)]
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[allow(dead_code, unreachable_pub)]
#[derive(Debug, Default)]
pub struct Exposition {
    pub samples: Vec<Sample>,
    /// `# TYPE` of each family.
    pub types: BTreeMap<String, String>,
    /// `# HELP` of each family.
    pub help: BTreeMap<String, String>,
}

#[allow(dead_code, unreachable_pub)]
impl Exposition {
    pub fn parse(text: &str) -> Exposition {
        let mut out = Exposition::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end();
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
                out.help.insert(name.to_owned(), help.to_owned());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, ty) =
                    rest.split_once(' ').unwrap_or_else(|| panic!("line {n}: bad TYPE {line:?}"));
                out.types.insert(name.to_owned(), ty.to_owned());
            } else if !line.starts_with('#') {
                out.samples.push(parse_sample(line).unwrap_or_else(|e| panic!("line {n}: {e}: {line:?}")));
            }
        }
        out
    }

    /// Samples named `name` whose labels include all of `labels`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// Sum of the values of [`matching`](Self::matching) samples.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let bytes = line.as_bytes();
    let mut i = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..i];
    if name.is_empty() || !name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':') {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut labels = BTreeMap::new();
    if bytes[i] == b'{' {
        i += 1;
        while bytes.get(i) != Some(&b'}') {
            let eq = i + line[i..].find('=').ok_or("label without =")?;
            let key = &line[i..eq];
            if key.is_empty() || !key.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
                return Err(format!("bad label name {key:?}"));
            }
            if bytes.get(eq + 1) != Some(&b'"') {
                return Err("label value not quoted".into());
            }
            i = eq + 2;
            let mut value = Vec::new();
            loop {
                match *bytes.get(i).ok_or("unterminated label value")? {
                    b'\\' => {
                        value.push(match *bytes.get(i + 1).ok_or("dangling escape")? {
                            b'n' => b'\n',
                            b'\\' => b'\\',
                            b'"' => b'"',
                            c => return Err(format!("bad escape \\{}", c as char)),
                        });
                        i += 2;
                    }
                    b'"' => {
                        i += 1;
                        break;
                    }
                    c => {
                        value.push(c);
                        i += 1;
                    }
                }
            }
            labels.insert(key.to_owned(), String::from_utf8(value).map_err(|_| "label value not UTF-8")?);
            match bytes.get(i) {
                Some(b',') => i += 1,
                Some(b'}') => {}
                _ => return Err("expected , or } after a label".into()),
            }
        }
        i += 1;
    }
    let mut fields = line[i..].split_whitespace();
    let value = match fields.next().ok_or("no value")? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().map_err(|_| format!("bad value {v:?}"))?,
    };
    if fields.next().is_some_and(|ts| ts.parse::<i64>().is_err()) || fields.next().is_some() {
        return Err("trailing garbage".into());
    }
    Ok(Sample { name: name.to_owned(), labels, value })
}

/// Lints `exposition` with `promtool check metrics` (Prometheus's own parser
/// and linter) and fails on any finding.
#[allow(dead_code, unreachable_pub)]
pub fn promtool_check(exposition: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect(
            "promtool is required: install Debian's `prometheus` package (the README's test command does)",
        );
    child.stdin.take().unwrap().write_all(exposition.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics found problems:\n{}{}\n--- exposition ---\n{exposition}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
