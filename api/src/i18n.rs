//! Languages (issue 30): Simplified Chinese first, and English. One message
//! catalog per language, `api/i18n/LANG.json`, a flat map from a key
//! (`customer.talk_to_person`) to its text, `{name}` marking a value filled
//! in. Every user-visible string of the pages and of the server's texts is
//! there: the pages' templates name keys as `{{key}}` and are filled in
//! here as they are served; their scripts get the texts of their keys as
//! JSON in the page (`<script type="application/json" id="i18n">`) and look
//! them up with `t()` (`web/common.js`).
//!
//! Which language a page is in: `?lang=`, else the tenant's default locale
//! (`TenantLocaleSet`; `zh-CN` until set), else the browser's
//! `Accept-Language`, else Simplified Chinese.

use std::collections::BTreeMap;
use std::sync::LazyLock;

/// A language Witness speaks; Simplified Chinese unless said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Lang {
    #[default]
    ZhCn,
    En,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::ZhCn, Lang::En];

    /// Its BCP 47 tag, as `<html lang>` and the catalog's file name have it.
    pub fn tag(self) -> &'static str {
        match self {
            Lang::ZhCn => "zh-CN",
            Lang::En => "en",
        }
    }

    /// The language of a BCP 47 tag, if Witness speaks it: any Chinese
    /// (`zh`, `zh-CN`, `zh-Hans`, `zh_CN`) is Simplified Chinese, any
    /// English is English.
    pub fn from_tag(tag: &str) -> Option<Lang> {
        let primary = tag.trim().split(['-', '_']).next()?.to_ascii_lowercase();
        match primary.as_str() {
            "zh" => Some(Lang::ZhCn),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// A tenant's default language, from its directory.
    pub fn of_tenant(known: &witness_domain::tenant::TenantState) -> Lang {
        Lang::from_tag(known.locale()).unwrap_or_default()
    }

    /// The language of an `Accept-Language` header Witness speaks that the
    /// browser likes best (highest `q`, then first).
    pub fn from_accept_language(header: &str) -> Option<Lang> {
        let mut best: Option<(f32, Lang)> = None;
        for range in header.split(',') {
            let mut parts = range.split(';');
            let Some(lang) = parts.next().and_then(Lang::from_tag) else { continue };
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
                best = Some((q, lang));
            }
        }
        best.map(|(_, lang)| lang)
    }

    fn catalog(self) -> &'static BTreeMap<String, String> {
        static CATALOGS: LazyLock<[BTreeMap<String, String>; 2]> = LazyLock::new(|| {
            let parse = |json: &str, name: &str| {
                serde_json::from_str(json).unwrap_or_else(|e| panic!("the catalog {name} is not a flat JSON map: {e}"))
            };
            [parse(include_str!("../i18n/zh-CN.json"), "zh-CN.json"), parse(include_str!("../i18n/en.json"), "en.json")]
        });
        &CATALOGS[self as usize]
    }

    /// The text of `key` (the key itself if the catalog lacks it: a test
    /// makes sure none does).
    pub fn text(self, key: &str) -> &str {
        self.catalog().get(key).map_or(key, String::as_str)
    }

    /// The text of `key` with each `{name}` replaced by its value.
    pub fn format(self, key: &str, values: &[(&str, &str)]) -> String {
        values.iter().fold(self.text(key).to_owned(), |text, (name, value)| text.replace(&format!("{{{name}}}"), value))
    }

    /// The catalog's text for `key`, if it has one: how a server text
    /// written in English where it is made (an error, [`crate::ApiError`])
    /// reads in this language.
    pub fn translation(self, key: &str) -> Option<&'static str> {
        self.catalog().get(key).map(String::as_str)
    }

    /// Every key of the catalog.
    pub fn keys(self) -> impl Iterator<Item = &'static str> {
        self.catalog().keys().map(String::as_str)
    }
}

/// The language a request asks for in `Accept-Language` (the pages send
/// their own), else Simplified Chinese: what the server's texts for people
/// (the bot's, the queue's notices) are written in.
#[derive(Debug, Clone, Copy)]
pub struct Asked(pub Lang);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Asked {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(axum::http::header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok());
        Ok(Asked(header.and_then(Lang::from_accept_language).unwrap_or_default()))
    }
}

/// The tenant's default language (what its staff read): `TenantLocaleSet`,
/// else Simplified Chinese.
pub async fn tenant_lang(state: &crate::AppState, tenant: &witness_schemas::TenantId) -> Result<Lang, crate::ApiError> {
    Ok(Lang::of_tenant(&witness_app::tenant::directory(&state.store, tenant).await?))
}

/// A page's template in `lang`: `{{lang}}` its tag, every other `{{key}}`
/// its text (escaped for HTML), and before `</head>` the texts of the keys
/// under `prefixes` (`"customer."`) as JSON for the page's scripts.
pub fn render_page(template: &str, lang: Lang, prefixes: &[&str]) -> String {
    let mut out = String::with_capacity(template.len() * 2);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let key = &after[..end];
        match key {
            "lang" => out.push_str(lang.tag()),
            _ => out.push_str(&html_escape(lang.text(key))),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    let texts: BTreeMap<&str, &str> = lang
        .catalog()
        .iter()
        .filter(|(k, _)| prefixes.iter().any(|p| k.starts_with(p)))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    // `<` escaped: no text can close the script element.
    let json = serde_json::to_string(&texts).expect("strings serialise").replace('<', "\\u003c");
    let script = format!("<script type=\"application/json\" id=\"i18n\">{json}</script>\n</head>");
    out.replacen("</head>", &script, 1)
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn tags_and_accept_language_choose_a_language_witness_speaks() {
        for (tag, lang) in [("zh", Lang::ZhCn), ("zh-CN", Lang::ZhCn), ("zh_Hans", Lang::ZhCn), ("en-GB", Lang::En)] {
            assert_eq!(Lang::from_tag(tag), Some(lang), "{tag}");
        }
        assert_eq!(Lang::from_tag("fr-FR"), None);
        assert_eq!(Lang::from_accept_language("fr-FR,fr;q=0.9,en-US;q=0.8,zh;q=0.7"), Some(Lang::En));
        assert_eq!(Lang::from_accept_language("en;q=0.5, zh-CN"), Some(Lang::ZhCn));
        assert_eq!(Lang::from_accept_language("zh;q=0, en;q=0.1"), Some(Lang::En));
        assert_eq!(Lang::from_accept_language("de, fr"), None);
    }

    /// The `{name}`s a text fills in, sorted.
    pub(crate) fn names(text: &str) -> Vec<String> {
        let mut found: Vec<String> =
            text.split('{').skip(1).filter_map(|s| s.split_once('}').map(|(n, _)| n.to_owned())).collect();
        found.sort();
        found
    }

    /// Both catalogs hold the same keys, none empty, with the same `{name}`s
    /// — but for errors' (`error.`), whose English is where they are made
    /// (see `crate::error`'s tests).
    #[test]
    fn both_catalogs_have_every_key_with_the_same_placeholders() {
        let zh: Vec<&str> = Lang::ZhCn.keys().filter(|k| !k.starts_with("error.")).collect();
        let en: Vec<&str> = Lang::En.keys().collect();
        assert_eq!(zh, en, "the catalogs' keys differ");
        for key in zh {
            for lang in Lang::ALL {
                assert!(!lang.text(key).trim().is_empty(), "{key} is empty in {}", lang.tag());
            }
            assert_eq!(names(Lang::ZhCn.text(key)), names(Lang::En.text(key)), "{key}: the values filled in differ");
        }
    }

    /// Every key a template (`{{key}}`) or a script (a string literal
    /// `"area.key"`) names is in the catalogs.
    #[test]
    fn every_key_the_pages_and_their_scripts_name_is_in_the_catalogs() {
        let sources = [
            include_str!("../web/customer.html"),
            include_str!("../web/agent.html"),
            include_str!("../web/admin.html"),
            include_str!("../web/supervisor.html"),
            include_str!("../web/common.js"),
            include_str!("../web/call.js"),
            include_str!("../web/customer.js"),
            include_str!("../web/agent.js"),
            include_str!("../web/admin.js"),
            include_str!("../web/supervisor.js"),
        ];
        let areas = ["common.", "call.", "customer.", "agent.", "admin.", "supervisor.", "timeline."];
        let mut named = Vec::new();
        for source in sources {
            named.extend(source.split("{{").skip(1).filter_map(|s| s.split_once("}}")).map(|(key, _)| key));
            named.extend(source.split('"').filter(|s| {
                areas.iter().any(|a| s.starts_with(a))
                    && s.chars().all(|c| c.is_ascii_lowercase() || c == '_' || c == '.')
            }));
        }
        let keys: Vec<&str> = Lang::En.keys().collect();
        let missing: Vec<&&str> = named.iter().filter(|k| **k != "lang" && !keys.contains(k)).collect();
        assert!(named.len() > 50, "the scan found {} keys", named.len());
        assert!(missing.is_empty(), "named but not in the catalogs: {missing:?}");
    }

    #[test]
    fn a_page_is_filled_in_escaped_with_its_scripts_texts() {
        let page = "<html lang=\"{{lang}}\"><head></head><title>{{customer.title}}</title></html>";
        let zh = render_page(page, Lang::ZhCn, &["customer."]);
        assert!(zh.starts_with("<html lang=\"zh-CN\">"), "{zh}");
        assert!(zh.contains(&format!("<title>{}</title>", Lang::ZhCn.text("customer.title"))), "{zh}");
        assert!(zh.contains("<script type=\"application/json\" id=\"i18n\">{\"customer."), "{zh}");
        assert!(!zh.contains("\"agent."), "only the page's own keys: {zh}");
        assert_eq!(html_escape("<a href=\"x\">&"), "&lt;a href=&quot;x&quot;&gt;&amp;");
        assert_eq!(Lang::En.format("customer.queue_position", &[("n", "3")]), "You are number 3 in the queue.");
    }
}
