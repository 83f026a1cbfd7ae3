//! The rules of the PTB lexer that coco-caption's tokenizer runs: CoreNLP 3.4.1's `PTBLexer`
//! (a JFlex 1.4.3 scanner, `%caseless`, lexical state `YyTraditionalTreebank3`), with the
//! options of `PTBTokenizer -preserveLines`: PTB3 escaping, `tokenizeNLs`, assimilations split,
//! untokenizable characters deleted, no Americanization.
//!
//! The scanner takes the longest match; on a tie the rule listed first wins. A rule with
//! trailing context `main/context` matches `main` followed by `context` (counted for the
//! longest-match comparison), but only `main` becomes the token: the longest prefix of the
//! match that `main` accepts while the rest is accepted by `context` (JFlex's general lookahead).
//!
//! Macro names follow the lexer's own, so each rule can be compared with its source. The
//! grammar notes in [`super::regex`] say how a pattern reads.

/// What a rule does with its match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Action {
    /// The matched text.
    Plain,
    /// The text without soft hyphens (U+00AD); `-` if nothing is left.
    SoftHyphen,
    /// All but the last `n` units; those are scanned again (`cannot` → `can` + `not`).
    Pushback(usize),
    /// Spaces become U+00A0 (`normalizeSpace`).
    Nbsp,
    /// A fixed token.
    Const(&'static str),
    /// `&amp;` (any case) becomes `&`.
    Amp,
    /// Quote normalisation, probably an opening quote (`` ` `` and ``` `` ```).
    QuoteLeft,
    /// Quote normalisation, probably a closing quote (`'` and `''`).
    QuoteRight,
    /// Vulgar fractions spelled out (`½` → `1/2`).
    Fraction,
    /// Currency signs normalised (`¢` → `cents`, `£` → `#`, `€` → `$`).
    Currency,
    /// An acronym before a likely sentence start: a one-letter acronym loses its period,
    /// a longer one keeps it; either way the period is scanned again.
    Acronym,
    /// The text, its final period scanned again as a token of its own.
    PeriodAgain,
    /// A phone number: spaces to U+00A0, parentheses to `-LRB-`/`-RRB-`.
    Phone,
    /// Parentheses to `-LRB-`/`-RRB-` (smileys).
    Parens,
    /// A run of hyphens: 3 or 4 become `--`, others stay.
    Dashes,
    /// Nothing (spaces, DEL, zero-width characters, `&nbsp;`).
    Skip,
    /// A line end: with `-preserveLines` it ends the output line.
    Newline,
    /// A character no rule covers: deleted (CoreNLP warns once).
    Untokenizable,
}

/// One rule: `main`, optional trailing `context`, action.
pub(super) struct Rule {
    pub(super) main: &'static str,
    pub(super) context: Option<&'static str>,
    pub(super) action: Action,
}

const fn rule(main: &'static str, action: Action) -> Rule {
    Rule {
        main,
        context: None,
        action,
    }
}

const fn look(main: &'static str, context: &'static str, action: Action) -> Rule {
    Rule {
        main,
        context: Some(context),
        action,
    }
}

/// The lexer's macros (its `NAME = regexp` definitions).
pub(super) const MACROS: &[(&str, &str)] = &[
    (
        "SGML",
        r#"\<([!\?][A-Za-z\-][^>\r\n]*|[A-Za-z][A-Za-z0-9_:\.\-]*([ ]+([A-Za-z][A-Za-z0-9_:\.\-]*|[A-Za-z][A-Za-z0-9_:\.\-]*[ ]*=[ ]*('[^']*'|\"[^\"]*\")))*[ ]*\/?|\/[A-Za-z][A-Za-z0-9_:\.\-]*)[ ]*\>"#,
    ),
    (
        "SPMDASH",
        r"&(MD|mdash|ndash);|[\u0096\u0097\u2013\u2014\u2015]",
    ),
    ("SPAMP", r"&amp;"),
    ("SPPUNC", r"&(HT|TL|UR|LR|QC|QL|QR|odq|cdq|#[0-9]+);"),
    ("SPLET", r"&[aeiouAEIOU](acute|grave|uml);"),
    ("SPACE", r"[ \t\u00A0\u2000-\u200A\u3000]"),
    ("SPACES", r"{SPACE}+"),
    ("NEWLINE", r"\r|\r?\n|\u2028|\u2029|\u000B|\u000C|\u0085"),
    ("SPACENL", r"({SPACE}|{NEWLINE})"),
    ("SPACENLS", r"{SPACENL}+"),
    ("SENTEND", r"{SPACENL}({SPACENL}|[:uppercase:]|{SGML})"),
    ("DIGIT", r"[:digit:]|[\u07C0-\u07C9]"),
    ("DATE", r"{DIGIT}{1,2}[\-\/]{DIGIT}{1,2}[\-\/]{DIGIT}{2,4}"),
    (
        "NUM",
        r"{DIGIT}+|{DIGIT}*([.:,\u00AD\u066B\u066C]{DIGIT}+)+",
    ),
    ("NUMBER", r"[\-+]?{NUM}"),
    (
        "SUBSUPNUM",
        r"[\u207A\u207B\u208A\u208B]?([\u2070\u00B9\u00B2\u00B3\u2074-\u2079]+|[\u2080-\u2089]+)",
    ),
    (
        "FRAC",
        r"({DIGIT}{1,4}[- \u00A0])?{DIGIT}{1,4}(\\?\/|\u2044){DIGIT}{1,4}",
    ),
    ("FRAC2", r"[\u00BC\u00BD\u00BE\u2153-\u215E]"),
    ("DOLSIGN", r"([A-Z]*\$|#)"),
    (
        "DOLSIGN2",
        r"[\u00A2\u00A3\u00A4\u00A5\u0080\u20A0\u20AC\u060B\u0E3F\u20A4\uFFE0\uFFE1\uFFE5\uFFE6]",
    ),
    // [:letter:] misses combining marks and some recent letters; the lexer adds them.
    (
        "LETTER",
        concat!(
            r"([:letter:]|{SPLET}|[",
            r"\u00AD\u0237-\u024F\u02C2-\u02C5\u02D2-\u02DF\u02E5-\u02FF\u0300-\u036F\u0370-\u037D",
            r"\u0384\u0385\u03CF\u03F6\u03FC-\u03FF\u0483-\u0487\u04CF\u04F6-\u04FF\u0510-\u0525",
            r"\u055A-\u055F\u0591-\u05BD\u05BF\u05C1\u05C2\u05C4\u05C5\u05C7\u0615-\u061A",
            r"\u063B-\u063F\u064B-\u065E\u0670\u06D6-\u06EF\u06FA-\u06FF\u070F\u0711\u0730-\u074F",
            r"\u0750-\u077F\u07A6-\u07B1\u07CA-\u07F5\u07FA\u0900-\u0903\u093C\u093E-\u094E",
            r"\u0951-\u0955\u0962-\u0963\u0981-\u0983\u09BC-\u09C4\u09C7\u09C8\u09CB-\u09CD\u09D7",
            r"\u09E2\u09E3\u0A01-\u0A03\u0A3C\u0A3E-\u0A4F\u0A81-\u0A83\u0ABC-\u0ACF\u0B82",
            r"\u0BBE-\u0BC2\u0BC6-\u0BC8\u0BCA-\u0BCD\u0C01-\u0C03\u0C3E-\u0C56\u0D3E-\u0D44",
            r"\u0D46-\u0D48\u0E30-\u0E3A\u0E47-\u0E4E\u0EB1-\u0EBC\u0EC8-\u0ECD",
            r"])"
        ),
    ),
    (
        "WORD",
        r"{LETTER}({LETTER}|{DIGIT})*([.!?]{LETTER}({LETTER}|{DIGIT})*)*",
    ),
    (
        "FILENAME_EXT",
        r"bat|bmp|c|class|cgi|cpp|dll|doc|docx|exe|gif|gz|h|htm|html|jar|java|jpeg|jpg|mov|mp3|pdf|php|pl|png|ppt|ps|py|sql|tar|txt|wav|x|xml|zip",
    ),
    (
        "FILENAME",
        r"({LETTER}|{DIGIT})+([.]({LETTER}|{DIGIT})+)*([.]{FILENAME_EXT})",
    ),
    (
        "THING",
        r"([dDoOlL]{APOSETCETERA}([:letter:]|[:digit:]))?([:letter:]|[:digit:])+({HYPHEN}([dDoOlL]{APOSETCETERA}([:letter:]|[:digit:]))?([:letter:]|[:digit:])+)*",
    ),
    ("THINGA", r"[A-Z]+(([+&]|{SPAMP})[A-Z]+)+"),
    (
        "THING3",
        r"[A-Za-z0-9]+(-[A-Za-z]+){0,2}(\\?\/[A-Za-z0-9]+(-[A-Za-z]+){0,2}){1,2}",
    ),
    ("APOS", r"['\u0092\u2019]|&apos;"),
    ("APOSETCETERA", r"{APOS}|[`\u0091\u2018\u201B]"),
    (
        "HTHING",
        r"[A-Za-z0-9][A-Za-z0-9.,\u00AD]*(-([A-Za-z0-9\u00AD]+|{ACRO2}\.))+",
    ),
    ("REDAUX", r"{APOS}([msdMSD]|re|ve|ll)"),
    ("SWORD", r"[A-Za-z\u00AD]*[A-MO-Za-mo-z](\u00AD)*"),
    ("SREDAUX", r"n{APOSETCETERA}t"),
    (
        "APOWORD",
        concat!(
            r"{APOS}n{APOS}?|[lLdDjJ]{APOS}|Dunkin{APOS}|somethin{APOS}|ol{APOS}|{APOS}em",
            r"|[A-HJ-XZn]{APOSETCETERA}[:letter:]{2}[:letter:]*|{APOS}[2-9]0s|{APOS}till?",
            r"|[:letter:][:letter:]*[aeiouyAEIOUY]{APOSETCETERA}[aeiouA-Z][:letter:]*|{APOS}cause",
            r"|cont'd\.?|'twas|nor'easter|c'mon|e'er|s'mores|ev'ry|li'l|nat'l|O{APOSETCETERA}o"
        ),
    ),
    ("APOWORD2", r"y{APOS}"),
    (
        "FULLURL",
        r#"https?:\/\/[^ \t\n\f\r\"<>|(){}]+[^ \t\n\f\r\"<>|.!?(){},-]"#,
    ),
    // Note `,-_` in the second class: a range from ',' to '_' (digits, capitals and more).
    (
        "LIKELYURL",
        r#"((www\.([^ \t\n\f\r\"<>|.!?(){},]+\.)+[a-zA-Z]{2,4})|(([^ \t\n\f\r\"`'<>|.!?(){},-_$]+\.)+(com|net|org|edu)))(\/[^ \t\n\f\r\"<>|()]+[^ \t\n\f\r\"<>|.!?(){},-])?"#,
    ),
    (
        "EMAIL",
        r#"(&lt;|<)?[a-zA-Z0-9][^ \t\n\f\r\"<>|()\u00A0{}]*@([^ \t\n\f\r\"<>|(){}.\u00A0]+\.)*([^ \t\n\f\r\"<>|(){}.\u00A0]+)(&gt;|>)?"#,
    ),
    ("TWITTER_NAME", r"@[a-zA-Z_][a-zA-Z_0-9]*"),
    ("TWITTER_CATEGORY", r"#{LETTER}+"),
    ("TWITTER", r"{TWITTER_NAME}|{TWITTER_CATEGORY}"),
    (
        "ABMONTH",
        r"Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec",
    ),
    ("ABDAYS", r"Mon|Tue|Tues|Wed|Thu|Thurs|Fri"),
    (
        "ABSTATE",
        concat!(
            r"Ala|Ariz|[A]z|[A]rk|Calif|Colo|Conn|Ct|Dak|[D]el|Fla|Ga|[I]ll|Ind|Kans?|Ky|[L]a",
            r"|[M]ass|Md|Mich|Minn|[M]iss|Mo|Mont|Neb|Nev|Okla|[O]re|[P]a|Penn|Tenn|[T]ex|Va|Vt",
            r"|[W]ash|Wisc?|Wyo"
        ),
    ),
    (
        "ABCOMP",
        r"Inc|Cos?|Corp|Pp?t[ye]s?|Ltd|Plc|Rt|Bancorp|Bhd|Assn|Univ|Intl|Sys",
    ),
    ("ABNUM", r"tel|est|ext|sq"),
    ("ABPTIT", r"Jr|Sr|Bros|(Ed|Ph)\.D|Blvd|Rd|Esq"),
    (
        "ABBREV1",
        r"({ABMONTH}|{ABDAYS}|{ABSTATE}|{ABCOMP}|{ABNUM}|{ABPTIT}|etc|al|seq|Bldg)\.",
    ),
    (
        "ACRO",
        r"[A-Za-z](\.[A-Za-z])*|(Canada|Sino|Korean|EU|Japan|non)-U\.S|U\.S\.-(U\.K|U\.S\.S\.R)",
    ),
    (
        "ACRO2",
        r"[A-Za-z](\.[A-Za-z])+|(Canada|Sino|Korean|EU|Japan|non)-U\.S|U\.S\.-(U\.K|U\.S\.S\.R)",
    ),
    (
        "ABTITLE",
        concat!(
            r"Mr|Mrs|Ms|[M]iss|Drs?|Profs?|Sens?|Reps?|Attys?|Lt|Col|Gen|Messrs|Govs?|Adm|Rev|Maj",
            r"|Sgt|Cpl|Pvt|Capt|Ste?|Ave|Pres|Lieut|Hon|Brig|Co?mdr|Pfc|Spc|Supts?|Det|Mt|Ft|Adj",
            r"|Adv|Asst|Assoc|Ens|Insp|Mlle|Mme|Msgr|Sfc"
        ),
    ),
    ("ABCOMP2", r"Invt|Elec|Natl|M[ft]g|Dept"),
    (
        "ABBREV4",
        r"{ABTITLE}|vs|Alex|Wm|Jos|Cie|a\.k\.a|cf|TREAS|Ph|{ACRO}|{ABCOMP2}",
    ),
    ("ABBREV2", r"{ABBREV4}\."),
    ("ACRONYM", r"({ACRO})\."),
    ("ABBREV3", r"(ca|figs?|prop|nos?|art|bldg|prop|pp|op)\."),
    (
        "PHONE",
        concat!(
            r"(\([0-9]{2,3}\)[ \u00A0]?|(\+\+?)?([0-9]{2,4}[\- \u00A0])?[0-9]{2,4}[\- \u00A0])",
            r"[0-9]{3,4}[\- \u00A0]?[0-9]{3,5}",
            r"|((\+\+?)?[0-9]{2,4}\.)?[0-9]{2,4}\.[0-9]{3,4}\.[0-9]{3,5}"
        ),
    ),
    ("FAKEDUCKFEET", r"<<|>>"),
    ("LESSTHAN", r"<|&lt;"),
    ("GREATERTHAN", r">|&gt;"),
    ("HYPHEN", r"[-_\u058A\u2010\u2011]"),
    ("HYPHENS", r"\-+"),
    ("LDOTS", r"\.{3,5}|(\.[ \u00A0]){2,4}\.|[\u0085\u2026]"),
    ("ATS", r"@+"),
    ("UNDS", r"_+"),
    ("ASTS", r"\*+|(\\\*){1,3}"),
    ("HASHES", r"#+"),
    ("FNMARKS", r"{ATS}|{HASHES}|{UNDS}"),
    ("INSENTP", r"[,;:\u3001]"),
    (
        "QUOTES",
        r"{APOS}|''|[`\u2018\u2019\u201A\u201B\u201C\u201D\u0091\u0092\u0093\u0094\u201E\u201F\u2039\u203A\u00AB\u00BB]{1,2}",
    ),
    ("DBLQUOT", r#"\"|&quot;"#),
    (
        "TBSPEC",
        r"-(RRB|LRB|RCB|LCB|RSB|LSB)-|C\.D\.s|pro-|anti-|S(&|&amp;)P-500|S(&|&amp;)Ls|Cap{APOS}n|c{APOS}est",
    ),
    ("TBSPEC2", r"{APOS}[0-9][0-9]"),
    ("SMILEY", r"[<>]?[:;=][\-o\*']?[\(\)DPdpO\\{@\|\[\]]"),
    (
        "ASIANSMILEY",
        r"[\^x=~<>]\.\[\^x=~<>]|[\-\^x=~<>']_[\-\^x=~<>']|\([\-\^x=~<>'][_.]?[\-\^x=~<>']\)|\([\^x=~<>']-[\^x=~<>'`]\)",
    ),
    (
        "MISCSYMBOL",
        concat!(
            r"[+%&~\^|\\¦\u00A7¨\u00A9\u00AC\u00AE¯\u00B0-\u00B3\u00B4-\u00BA\u00D7\u00F7\u0387",
            r"\u05BE\u05C0\u05C3\u05C6\u05F3\u05F4\u0600-\u0603\u0606-\u060A\u060C\u0614\u061B",
            r"\u061E\u066A\u066D\u0703-\u070D\u07F6\u07F7\u07F8\u0964\u0965\u0E4F\u1FBD\u2016",
            r"\u2017\u2020-\u2023\u2030-\u2038\u203B\u203E-\u2042\u2044\u207A-\u207F\u208A-\u208E",
            r"\u2100-\u214F\u2190-\u21FF\u2200-\u2BFF\u3012\u30FB\uFF01-\uFF0F\uFF1A-\uFF20",
            r"\uFF3B-\uFF40\uFF5B-\uFF65\uFF65]"
        ),
    ),
];

/// Words after which an acronym's period is taken as a sentence end (case-sensitive classes:
/// only the capitalised form counts).
const SENTENCE_STARTERS: &str = concat!(
    r"({SPACENLS})([A]bout|[A]ccording|[A]dditionally|[A]fter|[A]n|[A]|[A]s|[A]t|[B]ut",
    r"|[E]arlier|[H]e|[H]er|[H]ere|[H]owever|[I]f|[I]n|[I]t|[L]ast|[M]any|[M]ore|[M]r\.|[M]s\.",
    r"|[N]ow|[O]nce|[O]ne|[O]ther|[O]ur|[S]he|[S]ince|[S]o|[S]ome|[S]uch|[T]hat|[T]he|[T]heir",
    r"|[T]hen|[T]here|[T]hese|[T]hey|[T]his|[W]e|[W]hen|[W]hile|[W]hat|[Y]et|[Y]ou|{SGML})",
    r"{SPACENL}"
);

use Action::*;

/// The rules in priority order (earlier wins a tie). `FRACSTB3` is absent: it belongs to the
/// strict-Treebank-3 lexical state, which the tokenizer does not use.
pub(super) const RULES: &[Rule] = &[
    rule(r"c[+][+]", Plain),
    rule(r"(c|f)#", Plain),
    rule(r"cannot", Pushback(3)),
    rule(r"'twas", Pushback(3)),
    rule(r"'tis", Pushback(2)),
    rule(r"gonna|gotta|lemme|gimme|wanna", Pushback(2)),
    rule(r"{SGML}", Nbsp),
    rule(r"{SPMDASH}", Const("--")),
    rule(r"{SPAMP}", Amp),
    rule(r"{SPPUNC}", Plain),
    look(r"{WORD}", r"{REDAUX}", SoftHyphen),
    look(r"{SWORD}", r"{SREDAUX}", SoftHyphen),
    rule(r"{WORD}", SoftHyphen),
    rule(r"{APOWORD}", Plain),
    look(r"{APOWORD2}", r"[:letter:]", Plain),
    rule(r"{FULLURL}", Plain),
    rule(r"{LIKELYURL}", Plain),
    rule(r"{EMAIL}", Plain),
    rule(r"{TWITTER}", Plain),
    look(r"{REDAUX}", r"[^A-Za-z]", QuoteRight),
    look(r"{SREDAUX}", r"[^A-Za-z]", QuoteRight),
    rule(r"{DATE}", Plain),
    rule(r"{NUMBER}", SoftHyphen),
    rule(r"{SUBSUPNUM}", Plain),
    rule(r"{FRAC}", Nbsp),
    rule(r"{FRAC2}", Fraction),
    rule(r"{TBSPEC}", Amp),
    rule(r"{THING3}", Plain),
    rule(r"{DOLSIGN}", Plain),
    rule(r"{DOLSIGN2}", Currency),
    look(r"{ACRONYM}", SENTENCE_STARTERS, Acronym),
    look(r"{ABBREV3}", r"{SPACENL}?[:digit:]", Plain),
    look(r"(pt[eyEY]|co)\.", r"{SPACE}(ltd|lim)", Plain),
    look(r"{ABBREV1}", r"{SENTEND}", PeriodAgain),
    look(r"{ABBREV1}", r"[^][^]", Plain),
    rule(r"{ABBREV1}", PeriodAgain),
    rule(r"{ABBREV2}", Plain),
    look(r"{ABBREV4}", r"{SPACE}", Plain),
    look(r"{ACRO}", r"{SPACENL}", Plain),
    look(r"{TBSPEC2}", r"{SPACENL}", Plain),
    look(r"{FILENAME}", r"({SPACENL}|[.?!,])", Plain),
    look(r"{WORD}\.", r"{INSENTP}", SoftHyphen),
    rule(r"{PHONE}", Phone),
    look(r"{DBLQUOT}", r"[A-Za-z0-9$]", QuoteLeft),
    rule(r"{DBLQUOT}", QuoteRight),
    rule(r"\x7f", Skip),
    rule(r"{LESSTHAN}", Const("<")),
    rule(r"{GREATERTHAN}", Const(">")),
    look(r"{SMILEY}", r"[^A-Za-z0-9]", Parens),
    rule(r"{ASIANSMILEY}", Parens),
    rule(r"\{", Const("-LCB-")),
    rule(r"\}", Const("-RCB-")),
    rule(r"\[", Const("-LSB-")),
    rule(r"\]", Const("-RSB-")),
    rule(r"\(", Const("-LRB-")),
    rule(r"\)", Const("-RRB-")),
    rule(r"{HYPHENS}", Dashes),
    rule(r"{LDOTS}", Const("...")),
    rule(r"{FNMARKS}", Plain),
    rule(r"{ASTS}", Plain),
    rule(r"{INSENTP}", Plain),
    rule(r"[?!]+", Plain),
    rule(
        r"[.¡¿\u037E\u0589\u061F\u06D4\u0700-\u0702\u07FA\u3002]",
        Plain,
    ),
    rule(r"=", Plain),
    rule(r"\/", Plain),
    look(r"{HTHING}\.", r"{INSENTP}", SoftHyphen),
    rule(r"{HTHING}", SoftHyphen),
    look(r"{THING}\.", r"{INSENTP}", Plain),
    rule(r"{THING}", Plain),
    look(r"{THINGA}\.", r"{INSENTP}", Amp),
    rule(r"{THINGA}", Amp),
    look(r"'", r"[A-Za-z][^ \t\n\r\u00A0]", QuoteLeft),
    rule(r"{REDAUX}", QuoteRight),
    rule(r"{SREDAUX}", QuoteRight),
    rule(r"{QUOTES}", QuoteRight),
    rule(r"{FAKEDUCKFEET}", Plain),
    rule(r"{MISCSYMBOL}", Plain),
    rule(r"\0|{SPACES}|[\u200B\u200E-\u200F\uFEFF]", Skip),
    rule(r"{NEWLINE}", Newline),
    rule(r"&nbsp;", Skip),
    rule(r".", Untokenizable),
];
