//! The knowledge base: each tenant's FAQ, searchable in Chinese and English.
//!
//! FAQ entries are events ([`FaqImported`] on the tenant stream), so every
//! node sees the same knowledge base and the audit trail shows what the bot
//! knew when it answered. Each tenant's entries are indexed in memory with
//! tantivy: text is cut into words by jieba (Chinese, search mode; Latin
//! words pass through), lower-cased and stemmed (English). The index is
//! rebuilt when the tenant stream has moved on since it was built.
//!
//! A hit's **confidence** is its BM25 score divided by the score the entry's
//! own question gets for itself: 1.0 means the customer asked the FAQ's
//! question, 0.0 that no word matched. The bot answers above a threshold.
//!
//! Entries asked in Chinese and those asked in other languages are indexed
//! apart, each with its own word statistics, and a search asks both: long
//! Chinese answers once moved the English entries' scores (the average
//! length BM25 weighs by), so that an English question sharing only "I",
//! "my" and "card" with an entry passed the threshold.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, Mutex};
use witness_domain::Refusal;

use jieba_rs::Jieba;
use serde::{Deserialize, Serialize};
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, BoostQuery, Occur, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value, STORED, STRING};
use tantivy::tokenizer::{Language, LowerCaser, Stemmer, TextAnalyzer, Token, TokenStream, Tokenizer};
use tantivy::{DocAddress, Index, IndexReader, TantivyDocument, Term};
use witness_engine::EventStore;
use witness_schemas::{Event, FaqEntry, StreamId, TenantId};

use crate::ApiError;

/// The most entries one import takes.
pub const MAX_ENTRIES: usize = 5_000;
/// The longest question or answer, in characters.
pub const MAX_TEXT: usize = 8_000;

static JIEBA: LazyLock<Jieba> = LazyLock::new(Jieba::new);

/// jieba as a tantivy tokenizer.
#[derive(Clone, Default)]
struct JiebaTokenizer {
    tokens: Vec<Token>,
}

struct Tokens<'a> {
    tokens: &'a mut Vec<Token>,
    at: usize,
}

impl TokenStream for Tokens<'_> {
    fn advance(&mut self) -> bool {
        self.at += 1;
        self.at <= self.tokens.len()
    }
    fn token(&self) -> &Token {
        &self.tokens[self.at - 1]
    }
    fn token_mut(&mut self) -> &mut Token {
        &mut self.tokens[self.at - 1]
    }
}

impl Tokenizer for JiebaTokenizer {
    type TokenStream<'a> = Tokens<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> Tokens<'a> {
        self.tokens.clear();
        let mut offset = 0;
        for token in JIEBA.cut_for_search(text, true) {
            let word = token.word;
            // cut_for_search yields words in order, with overlapping sub-words
            // of long ones; find each from the last start.
            let from = text[offset..].find(word).map_or(offset, |i| offset + i);
            if word.chars().any(char::is_alphanumeric) {
                self.tokens.push(Token {
                    offset_from: from,
                    offset_to: from + word.len(),
                    position: self.tokens.len(),
                    text: word.to_owned(),
                    position_length: 1,
                });
            }
            offset = from;
        }
        Tokens { tokens: &mut self.tokens, at: 0 }
    }
}

fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(JiebaTokenizer::default()).filter(LowerCaser).filter(Stemmer::new(Language::English)).build()
}

/// One search hit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    pub id: String,
    pub question: String,
    pub answer: String,
    /// 0 to 1, see the module docs.
    pub confidence: f64,
}

/// One tenant's index: its entries asked in Chinese, and the others.
struct TenantIndex {
    /// The tenant stream version it was built at.
    version: u64,
    entries: BTreeMap<String, FaqEntry>,
    parts: Vec<Part>,
}

impl TenantIndex {
    fn build(version: u64, entries: BTreeMap<String, FaqEntry>) -> tantivy::Result<Self> {
        let (chinese, other): (BTreeMap<_, _>, BTreeMap<_, _>) =
            entries.iter().map(|(k, v)| (k.clone(), v.clone())).partition(|(_, e)| is_chinese(&e.question));
        let parts =
            [chinese, other].into_iter().filter(|p| !p.is_empty()).map(Part::build).collect::<Result<_, _>>()?;
        Ok(Self { version, entries, parts })
    }

    /// The best `limit` entries of either part, most confident first.
    fn search(&self, text: &str, limit: usize) -> tantivy::Result<Vec<Hit>> {
        let mut hits = vec![];
        for part in &self.parts {
            hits.extend(part.search(text, limit)?);
        }
        hits.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
        hits.truncate(limit);
        Ok(hits)
    }
}

/// Whether `text` is written in Chinese (has a CJK ideograph).
fn is_chinese(text: &str) -> bool {
    text.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c) || ('\u{3400}'..='\u{4dbf}').contains(&c))
}

/// Entries of one language, indexed with their own word statistics.
struct Part {
    entries: BTreeMap<String, FaqEntry>,
    reader: IndexReader,
    fields: (Field, Field, Field),
}

impl Part {
    fn build(entries: BTreeMap<String, FaqEntry>) -> tantivy::Result<Self> {
        let mut schema = Schema::builder();
        let text = TextOptions::default()
            .set_indexing_options(
                TextFieldIndexing::default().set_tokenizer("witness").set_index_option(IndexRecordOption::WithFreqs),
            )
            .set_stored();
        let id = schema.add_text_field("id", STRING | STORED);
        let question = schema.add_text_field("question", text.clone());
        let answer = schema.add_text_field("answer", text);
        let index = Index::create_in_ram(schema.build());
        index.tokenizers().register("witness", analyzer());
        // The smallest budget tantivy takes; FAQs are small.
        let mut writer = index.writer_with_num_threads(1, 15_000_000)?;
        for e in entries.values() {
            let mut doc = TantivyDocument::default();
            doc.add_text(id, &e.id);
            doc.add_text(question, &e.question);
            doc.add_text(answer, &e.answer);
            writer.add_document(doc)?;
        }
        writer.commit()?;
        let reader = index.reader()?;
        Ok(Self { entries, reader, fields: (id, question, answer) })
    }

    /// The question counts twice as much as the answer.
    fn query(&self, text: &str) -> Option<Box<dyn Query>> {
        let (_, question, answer) = self.fields;
        let mut analyzer = analyzer();
        let mut stream = analyzer.token_stream(text);
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![];
        while stream.advance() {
            let word = &stream.token().text;
            for (field, boost) in [(question, 2.0), (answer, 1.0)] {
                let term = TermQuery::new(Term::from_field_text(field, word), IndexRecordOption::WithFreqs);
                clauses.push((Occur::Should, Box::new(BoostQuery::new(Box::new(term), boost))));
            }
        }
        (!clauses.is_empty()).then(|| Box::new(BooleanQuery::new(clauses)) as Box<dyn Query>)
    }

    fn search(&self, text: &str, limit: usize) -> tantivy::Result<Vec<Hit>> {
        let Some(query) = self.query(text) else { return Ok(vec![]) };
        let searcher = self.reader.searcher();
        let top: Vec<(f32, DocAddress)> = searcher.search(&query, &TopDocs::with_limit(limit))?;
        let mut hits = vec![];
        for (score, address) in top {
            let doc: TantivyDocument = searcher.doc(address)?;
            let id = doc.get_first(self.fields.0).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
            let Some(entry) = self.entries.get(&id) else { continue };
            // The entry's own question, asked of the index: the best a
            // question can score against this entry.
            let own = match self.query(&entry.question) {
                Some(q) => searcher
                    .search(&q, &TopDocs::with_limit(self.entries.len().max(1)))?
                    .into_iter()
                    .find(|(_, a)| *a == address)
                    .map_or(score, |(s, _)| s),
                None => score,
            };
            let confidence = if own > 0.0 { (score / own).min(1.0) as f64 } else { 0.0 };
            hits.push(Hit { id, question: entry.question.clone(), answer: entry.answer.clone(), confidence });
        }
        hits.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
        Ok(hits)
    }
}

/// Every tenant's knowledge base, built on demand from the tenant streams.
#[derive(Clone, Default)]
pub struct KnowledgeBase {
    tenants: Arc<Mutex<HashMap<TenantId, Arc<TenantIndex>>>>,
}

impl std::fmt::Debug for KnowledgeBase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnowledgeBase").finish_non_exhaustive()
    }
}

impl KnowledgeBase {
    /// The tenant's index, rebuilt if the tenant stream moved on.
    async fn index(&self, store: &EventStore, tenant: &TenantId) -> Result<Arc<TenantIndex>, ApiError> {
        let cached = self.tenants.lock().unwrap_or_else(|p| p.into_inner()).get(tenant).cloned();
        let from = cached.as_ref().map_or(0, |c| c.version);
        let newer = store.read_stream(&StreamId::tenant(tenant), from + 1).await?;
        if let (Some(cached), true) = (&cached, newer.is_empty()) {
            return Ok(cached.clone());
        }
        let mut entries = cached.map(|c| c.entries.clone()).unwrap_or_default();
        for e in newer.iter().filter(|e| e.event_type == "FaqImported") {
            if let Ok(Event::FaqImported(import)) = e.decode() {
                entries.extend(import.entries.into_iter().map(|f| (f.id.clone(), f)));
            }
        }
        let version = newer.last().map_or(from, |e| e.stream_version);
        let index = tokio::task::spawn_blocking(move || TenantIndex::build(version, entries))
            .await
            .expect("index task")
            .map_err(index_error)?;
        let index = Arc::new(index);
        self.tenants.lock().unwrap_or_else(|p| p.into_inner()).insert(tenant.clone(), index.clone());
        Ok(index)
    }

    /// The best `limit` entries for `text`, most confident first.
    pub async fn search(
        &self,
        store: &EventStore,
        tenant: &TenantId,
        text: &str,
        limit: usize,
    ) -> Result<Vec<Hit>, ApiError> {
        let index = self.index(store, tenant).await?;
        let text = text.to_owned();
        tokio::task::spawn_blocking(move || index.search(&text, limit)).await.expect("search task").map_err(index_error)
    }
}

// -------------------------------------------------------------------- routes

/// The largest FAQ file one import takes.
pub const MAX_IMPORT: usize = 2 * 1024 * 1024;

pub(crate) fn router() -> axum::Router<crate::AppState> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/api/kb/import", post(import).layer(axum::extract::DefaultBodyLimit::max(MAX_IMPORT)))
        .route("/api/kb/search", get(search))
        .route("/api/sessions/{id}/suggestions", get(suggestions))
}

#[derive(Deserialize)]
struct ImportQuery {
    format: Format,
}

/// `POST /api/kb/import?format=json|markdown` with the file as the body.
async fn import(
    axum::extract::State(state): axum::extract::State<crate::AppState>,
    crate::auth::Caller(caller): crate::auth::Caller,
    query: Result<axum::extract::Query<ImportQuery>, axum::extract::rejection::QueryRejection>,
    body: Result<String, axum::extract::rejection::StringRejection>,
) -> Result<(axum::http::StatusCode, axum::Json<serde_json::Value>), ApiError> {
    use witness_domain::tenant::TenantCommand;
    caller.require(&[witness_schemas::Role::Admin])?;
    let axum::extract::Query(query) =
        query.map_err(|_| ApiError::bad_request(refusal!("faq_format", "`format` must be `json` or `markdown`")))?;
    let body = body.map_err(|e| ApiError::unread_body(e.status(), e.body_text()))?;
    let entries = parse(query.format, &body).map_err(ApiError::bad_request)?;
    let count = entries.len();
    let command = TenantCommand::ImportFaq { entries };
    witness_app::tenant::on_tenant_stream(&state.store, &caller.t, &caller.actor(), command).await?;
    Ok((axum::http::StatusCode::CREATED, axum::Json(serde_json::json!({ "imported": count }))))
}

#[derive(Deserialize)]
struct SearchQuery {
    q: String,
}

/// `GET /api/kb/search?q=TEXT`: the three best entries.
async fn search(
    axum::extract::State(state): axum::extract::State<crate::AppState>,
    crate::auth::Caller(caller): crate::auth::Caller,
    query: Result<axum::extract::Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<Vec<Hit>>, ApiError> {
    use witness_schemas::Role;
    caller.require(&[Role::Agent, Role::Supervisor, Role::Admin])?;
    let axum::extract::Query(query) =
        query.map_err(|_| ApiError::bad_request(refusal!("q_required", "`q` is required")))?;
    Ok(axum::Json(state.kb.search(&state.store, &caller.t, &query.q, 3).await?))
}

/// `GET /api/sessions/{id}/suggestions`: entries for the customer's last question.
async fn suggestions(
    axum::extract::State(state): axum::extract::State<crate::AppState>,
    crate::auth::Caller(caller): crate::auth::Caller,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<axum::Json<Vec<Hit>>, ApiError> {
    use witness_domain::session::Speaker;
    caller.require(&[witness_schemas::Role::Agent])?;
    let session = witness_app::session::load(&state.store, &caller, &id).await?;
    let last =
        session.state.recent.iter().rev().find(|m| m.from == Speaker::Customer && !crate::bot::asks_for_human(&m.text));
    match last {
        Some(m) => Ok(axum::Json(state.kb.search(&state.store, &caller.t, &m.text, 3).await?)),
        None => Ok(axum::Json(vec![])),
    }
}

fn index_error(e: tantivy::TantivyError) -> ApiError {
    tracing::error!(error = %e, "knowledge base index");
    ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        refusal!("kb_unavailable", "the knowledge base is unavailable"),
    )
}

/// An import file: JSON (`[{"id"?, "question", "answer"}]`) or Markdown
/// (each `## ` heading a question, the text under it its answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Json,
    Markdown,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonEntry {
    #[serde(default)]
    id: Option<String>,
    question: String,
    answer: String,
}

/// An id for an entry that has none: stable for the same question.
fn id_of(question: &str) -> String {
    use sha2::Digest;
    format!("q-{}", &hex::encode(sha2::Sha256::digest(question.trim().as_bytes()))[..16])
}

/// Parses an import file. Every problem is named with where it is; an empty
/// file, an entry without question or answer, an overlong text or a
/// repeated id refuses the whole import.
pub fn parse(format: Format, text: &str) -> Result<Vec<FaqEntry>, Refusal> {
    let raw: Vec<(Option<String>, String, String)> = match format {
        Format::Json => serde_json::from_str::<Vec<JsonEntry>>(text)
            .map_err(|e| refusal!("faq_json", "FAQ JSON: {detail}", detail = e))?
            .into_iter()
            .map(|e| (e.id, e.question, e.answer))
            .collect(),
        Format::Markdown => {
            let mut entries: Vec<(Option<String>, String, String)> = vec![];
            for (n, line) in text.lines().enumerate() {
                if let Some(question) = line.strip_prefix("## ") {
                    entries.push((None, question.trim().to_owned(), String::new()));
                } else if let Some(last) = entries.last_mut() {
                    last.2.push_str(line);
                    last.2.push('\n');
                } else if !line.trim().is_empty() && !line.starts_with("# ") {
                    return Err(refusal!(
                        "faq_markdown",
                        "FAQ Markdown line {line}: text before the first `## ` question",
                        line = n + 1
                    ));
                }
            }
            entries
        }
    };
    if raw.is_empty() {
        return Err(refusal!("faq_no_entries", "the FAQ file has no entries"));
    }
    if raw.len() > MAX_ENTRIES {
        return Err(refusal!(
            "faq_too_many",
            "the FAQ file has {count} entries; at most {max} per import",
            count = raw.len(),
            max = MAX_ENTRIES
        ));
    }
    let mut seen = std::collections::HashSet::new();
    let mut entries = vec![];
    for (i, (id, question, answer)) in raw.into_iter().enumerate() {
        let (question, answer) = (question.trim().to_owned(), answer.trim().to_owned());
        let (entry, quoted) = (i + 1, format!("{question:?}"));
        if question.is_empty() || answer.is_empty() {
            return Err(refusal!(
                "faq_entry_empty",
                "entry {entry} ({question}): needs a question and an answer",
                entry = entry,
                question = quoted
            ));
        }
        if question.chars().count() > MAX_TEXT || answer.chars().count() > MAX_TEXT {
            return Err(refusal!(
                "faq_entry_long",
                "entry {entry} ({question}): longer than {max} characters",
                entry = entry,
                question = quoted,
                max = MAX_TEXT
            ));
        }
        let id = id.unwrap_or_else(|| id_of(&question));
        if id.is_empty() || id.len() > 128 {
            return Err(refusal!(
                "faq_entry_id",
                "entry {entry} ({question}): an id is 1 to 128 characters",
                entry = entry,
                question = quoted
            ));
        }
        if !seen.insert(id.clone()) {
            return Err(refusal!(
                "faq_entry_twice",
                "entry {entry} ({question}): id {id} appears twice",
                entry = entry,
                question = quoted,
                id = format!("{id:?}")
            ));
        }
        entries.push(FaqEntry { id, question, answer });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> BTreeMap<String, FaqEntry> {
        let faq = [
            ("fee", "信用卡年费怎么收？", "年费在每年首次刷卡后收取，一年刷满六次免年费。"),
            ("limit", "How do I raise my credit limit?", "Open the app, go to Cards, then Limit."),
            ("lost", "I lost my card, what should I do?", "Freeze it in the app at once and call us."),
            ("password", "如何修改密码？", "在App的安全设置里修改登录密码。"),
        ];
        faq.into_iter()
            .map(|(id, q, a)| (id.to_owned(), FaqEntry { id: id.into(), question: q.into(), answer: a.into() }))
            .collect()
    }

    #[test]
    fn chinese_and_english_questions_find_their_entry() {
        let index = TenantIndex::build(1, entries()).unwrap();
        for (asked, id) in [
            ("年费怎么收", "fee"),
            ("信用卡年费", "fee"),
            ("how can I raise the credit limit", "limit"),
            ("my card was lost", "lost"),
            ("修改密码", "password"),
        ] {
            let hits = index.search(asked, 3).unwrap();
            assert_eq!(hits.first().map(|h| h.id.as_str()), Some(id), "{asked}: {hits:?}");
        }
    }

    /// The Chinese entries' statistics do not move the English ones': an
    /// English question that shares only "I", "my" and "card" with an entry
    /// scores the same with or without long Chinese entries beside it.
    #[test]
    fn chinese_entries_do_not_change_how_sure_an_english_answer_is() {
        let english: BTreeMap<_, _> = entries().into_iter().filter(|(_, e)| !is_chinese(&e.question)).collect();
        let mut both = entries();
        for i in 0..10 {
            let id = format!("long-{i}");
            let answer = "请在手机银行中办理，具体以网点公告为准，".repeat(20);
            both.insert(id.clone(), FaqEntry { id, question: format!("第{i}个长问题怎么办理？"), answer });
        }
        let asked = "Can I pay my Gold card bill in yen?";
        let alone = TenantIndex::build(1, english).unwrap().search(asked, 1).unwrap();
        let beside = TenantIndex::build(1, both).unwrap().search(asked, 1).unwrap();
        assert_eq!(alone, beside);
    }

    #[test]
    fn asking_the_faq_question_itself_is_full_confidence_and_unrelated_text_finds_nothing() {
        let index = TenantIndex::build(1, entries()).unwrap();
        let exact = index.search("How do I raise my credit limit?", 1).unwrap();
        assert!((exact[0].confidence - 1.0).abs() < 1e-6, "{exact:?}");
        let partial = index.search("credit limit", 1).unwrap();
        assert!(partial[0].confidence > 0.2 && partial[0].confidence < 1.0, "{partial:?}");
        assert!(index.search("天气预报 weather tomorrow", 3).unwrap().is_empty());
    }

    #[test]
    fn markdown_and_json_imports_parse_and_bad_files_are_refused_with_the_place() {
        let md = "# Cards\n\n## 信用卡年费怎么收？\n一年刷满六次免年费。\n\n## Lost card?\nFreeze it.\n";
        let parsed = parse(Format::Markdown, md).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].answer, "一年刷满六次免年费。");
        assert_eq!(parsed[0].id, id_of("信用卡年费怎么收？"), "ids are stable for a question");
        let json = r#"[{"id": "a", "question": "Q?", "answer": "A."}]"#;
        assert_eq!(parse(Format::Json, json).unwrap()[0].id, "a");
        for (format, bad, words) in [
            (Format::Json, "[{\"question\": \"Q\"}]", "answer"),
            (Format::Json, "{", "FAQ JSON"),
            (Format::Json, "[]", "no entries"),
            (
                Format::Json,
                r#"[{"id":"a","question":"Q","answer":"A"},{"id":"a","question":"R","answer":"B"}]"#,
                "twice",
            ),
            (Format::Markdown, "stray text\n## Q\nA", "line 1"),
            (Format::Markdown, "## Q without answer\n", "needs a question and an answer"),
        ] {
            let error = parse(format, bad).unwrap_err();
            assert!(error.to_string().contains(words), "{bad}: {error}");
        }
    }
}
