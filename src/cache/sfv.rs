//! A lexer of Structured Field Values (RFC 9651; RFC 8941 and the
//! additions of RFC 9651, dates and display strings), as much as reading a
//! `Cache-Status` List needs: list members, bare items, inner lists and
//! parameters, borrowing the input. It never panics, never allocates, and
//! reads each byte at most once; what the items mean is
//! [`parse`](super::parse)'s concern.

/// A value that is not a valid Structured Field List.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Invalid;

pub(super) type Parsed<T> = Result<T, Invalid>;

/// Parses one field line as a List (RFC 9651, 4.2.1), calling `member` to
/// parse each member where it starts.
pub(super) fn each_member<'a>(
    line: &'a [u8],
    mut member: impl FnMut(&mut Parser<'a>) -> Parsed<()>,
) -> Parsed<()> {
    let mut p = Parser { s: line, i: 0 };
    p.skip(|c| c == b' ');
    if p.at_end() {
        return Ok(());
    }
    loop {
        member(&mut p)?;
        p.skip(|c| c == b' ' || c == b'\t');
        if p.at_end() {
            return Ok(());
        }
        p.expect(b',')?;
        p.skip(|c| c == b' ' || c == b'\t');
        if p.at_end() {
            return Err(Invalid); // a trailing comma
        }
    }
}

/// A Structured Fields bare item, borrowing the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Bare<'a> {
    Integer(i64),
    /// Decimals, byte sequences, dates and display strings: valid, unused.
    Other,
    /// The content between the quotes, escapes still in.
    String(&'a [u8]),
    Token(&'a [u8]),
    Boolean(bool),
}

/// A cursor over one field line.
#[derive(Debug)]
pub(super) struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    pub(super) fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }

    pub(super) fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    pub(super) fn next_byte(&mut self) -> Parsed<u8> {
        let c = self.peek().ok_or(Invalid)?;
        self.i += 1;
        Ok(c)
    }

    pub(super) fn expect(&mut self, c: u8) -> Parsed<()> {
        if self.next_byte()? == c { Ok(()) } else { Err(Invalid) }
    }

    pub(super) fn skip(&mut self, f: impl Fn(u8) -> bool) {
        while self.peek().is_some_and(&f) {
            self.i += 1;
        }
    }

    pub(super) fn inner_list(&mut self) -> Parsed<()> {
        self.expect(b'(')?;
        loop {
            self.skip(|c| c == b' ');
            if self.peek() == Some(b')') {
                self.i += 1;
                return Ok(());
            }
            self.bare_item()?;
            self.each_parameter(|_, _| {})?;
            match self.peek() {
                Some(b' ' | b')') => {}
                _ => return Err(Invalid),
            }
        }
    }

    /// Parses the parameters, giving `f` each key and value in order.
    pub(super) fn each_parameter(&mut self, mut f: impl FnMut(&'a [u8], Bare<'a>)) -> Parsed<()> {
        while self.peek() == Some(b';') {
            self.i += 1;
            self.skip(|c| c == b' ');
            let key = self.key()?;
            let value = if self.peek() == Some(b'=') {
                self.i += 1;
                self.bare_item()?
            } else {
                Bare::Boolean(true)
            };
            f(key, value);
        }
        Ok(())
    }

    /// `key = ( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" )`
    fn key(&mut self) -> Parsed<&'a [u8]> {
        let start = self.i;
        match self.peek() {
            Some(b'a'..=b'z' | b'*') => self.i += 1,
            _ => return Err(Invalid),
        }
        self.skip(|c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b'*'));
        Ok(&self.s[start..self.i])
    }

    pub(super) fn bare_item(&mut self) -> Parsed<Bare<'a>> {
        match self.peek().ok_or(Invalid)? {
            b'-' | b'0'..=b'9' => self.number(),
            b'"' => self.string(),
            b':' => self.byte_sequence(),
            b'?' => self.boolean(),
            b'@' => {
                self.i += 1;
                match self.number()? {
                    Bare::Integer(_) => Ok(Bare::Other),
                    _ => Err(Invalid),
                }
            }
            b'%' => self.display_string(),
            b'a'..=b'z' | b'A'..=b'Z' | b'*' => Ok(self.token()),
            _ => Err(Invalid),
        }
    }

    /// An Integer (`-`? 1 to 15 digits) or a Decimal (`-`? 1 to 12 digits,
    /// `.`, 1 to 3 digits).
    fn number(&mut self) -> Parsed<Bare<'a>> {
        let negative = self.peek() == Some(b'-');
        if negative {
            self.i += 1;
        }
        let start = self.i;
        self.skip(|c| c.is_ascii_digit());
        let int_digits = self.i - start;
        if int_digits == 0 {
            return Err(Invalid);
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            let frac = self.i;
            self.skip(|c| c.is_ascii_digit());
            let frac_digits = self.i - frac;
            if int_digits > 12 || !(1..=3).contains(&frac_digits) {
                return Err(Invalid);
            }
            return Ok(Bare::Other);
        }
        if int_digits > 15 {
            return Err(Invalid);
        }
        let magnitude = self.s[start..self.i].iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0'));
        Ok(Bare::Integer(if negative { -magnitude } else { magnitude }))
    }

    fn string(&mut self) -> Parsed<Bare<'a>> {
        self.expect(b'"')?;
        let start = self.i;
        loop {
            match self.next_byte()? {
                b'\\' => match self.next_byte()? {
                    b'"' | b'\\' => {}
                    _ => return Err(Invalid),
                },
                b'"' => return Ok(Bare::String(&self.s[start..self.i - 1])),
                0x20..=0x7e => {}
                _ => return Err(Invalid),
            }
        }
    }

    fn token(&mut self) -> Bare<'a> {
        let start = self.i;
        self.i += 1;
        self.skip(|c| is_tchar(c) || c == b':' || c == b'/');
        Bare::Token(&self.s[start..self.i])
    }

    /// `:` base64 `:`, whose content must decode (RFC 9651, 4.2.7).
    fn byte_sequence(&mut self) -> Parsed<Bare<'a>> {
        self.expect(b':')?;
        let start = self.i;
        self.skip(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'='));
        let content = &self.s[start..self.i];
        self.expect(b':')?;
        let data_len = content.iter().position(|&c| c == b'=').unwrap_or(content.len());
        let padding = content.len() - data_len;
        // Padding may be short or absent, never more than the data needs
        // (what the `base64` crate accepts with padding "indifferent").
        let valid = content[data_len..].iter().all(|&c| c == b'=')
            && data_len % 4 != 1
            && padding <= (4 - data_len % 4) % 4;
        if valid { Ok(Bare::Other) } else { Err(Invalid) }
    }

    fn boolean(&mut self) -> Parsed<Bare<'a>> {
        self.expect(b'?')?;
        match self.next_byte()? {
            b'0' => Ok(Bare::Boolean(false)),
            b'1' => Ok(Bare::Boolean(true)),
            _ => Err(Invalid),
        }
    }

    /// RFC 9651 Display String: `%"`, printable ASCII with `%xx` (lowercase
    /// hex) escapes, `"`.
    fn display_string(&mut self) -> Parsed<Bare<'a>> {
        self.expect(b'%')?;
        self.expect(b'"')?;
        loop {
            match self.next_byte()? {
                b'"' => return Ok(Bare::Other),
                b'%' => {
                    for _ in 0..2 {
                        if !matches!(self.next_byte()?, b'0'..=b'9' | b'a'..=b'f') {
                            return Err(Invalid);
                        }
                    }
                }
                0x20..=0x7e => {}
                _ => return Err(Invalid),
            }
        }
    }
}

pub(super) fn integer(value: Bare<'_>) -> Option<i64> {
    match value {
        Bare::Integer(n) => Some(n),
        _ => None,
    }
}

/// `tchar` of RFC 9110 section 5.6.2.
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// Whether a member identifier (a token, or a string with its escapes) is
/// `name`.
pub(super) fn identifies(id: Bare<'_>, name: &[u8]) -> bool {
    match id {
        Bare::Token(token) => token == name,
        Bare::String(raw) => {
            let mut unescaped = raw.iter().copied().filter({
                let mut escaped = false;
                move |&c| {
                    if escaped || c != b'\\' {
                        escaped = false;
                        true
                    } else {
                        escaped = true;
                        false
                    }
                }
            });
            let mut name = name.iter().copied();
            loop {
                match (unescaped.next(), name.next()) {
                    (None, None) => return true,
                    (Some(a), Some(b)) if a == b => {}
                    _ => return false,
                }
            }
        }
        _ => false,
    }
}
