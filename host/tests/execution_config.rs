//! The dynamic execution config (Druid's `executionconfig`) through the HTTP API, over a real
//! runner, store and the in-process simulated cluster: the template selection strategy and the
//! capacity change at run time and are used by the next launch, a strategy the adapter refuses
//! changes nothing, every change is in the history (who, when, what), Druid's paths answer, the
//! strategy survives a restart, and pod template files are re-read when they change.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use axum::body::Body;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use taskpod::api::{self, ApiState};
use taskpod::config::Config;
use taskpod::runner::Runner;
use taskpod::store::{Store, StoreOptions};
use tower::ServiceExt;

const CONFIG: &str = r#"
namespace: druid
instance: taskpod
adapters:
  - name: templates
    component: builtin:pod-template
    templates:
      base: base.yaml
      wiki: wiki.yaml
routing:
  default: templates
runner:
  capacity: 5
"#;

/// A PodTemplate whose main container runs `image`.
fn template(image: &str) -> Result<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let base = std::fs::read_to_string(root.join("examples/druid/pod-templates/base.yaml"))?;
    if !base.contains("image: apache/druid:30.0.0") {
        bail!("the example template changed: it no longer names apache/druid:30.0.0");
    }
    Ok(base.replace("image: apache/druid:30.0.0", &format!("image: {image}")))
}

fn task(datasource: &str) -> Value {
    json!({
        "type": "index_parallel",
        "id": format!("index_parallel_{datasource}_1"),
        "dataSource": datasource,
        "spec": {"dataSchema": {"dataSource": datasource}},
        "context": {}
    })
}

struct Host {
    state: ApiState,
}

impl Host {
    async fn start(dir: &Path, sim: &taskpod_sim::Sim) -> Result<Host> {
        let config = Config::load(&dir.join("taskpod.yaml"))?;
        let store = Store::open(dir.join("tasks.db"), StoreOptions::default())?;
        let runner = Runner::start(Arc::new(config), store, sim.client()).await?;
        taskpod::execution::restore(&runner).await?;
        Ok(Host {
            state: ApiState::new(runner),
        })
    }

    async fn call(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<(StatusCode, Value)> {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json");
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let resp = api::router(self.state.clone())
            .oneshot(req.body(Body::from(body.to_owned()))?)
            .await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok((status, value))
    }

    /// The main container's image of the Job `/v1/render` gives for a task of `datasource`.
    async fn rendered_image(&self, datasource: &str) -> Result<String> {
        let (status, body) = self
            .call(
                Method::POST,
                "/v1/render",
                &[],
                &task(datasource).to_string(),
            )
            .await?;
        if status != StatusCode::OK {
            bail!("render answered {status}: {body}");
        }
        body["job"]["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .map(str::to_owned)
            .context("no image in the rendered Job")
    }

    async fn stop(self) {
        self.state.close_streams();
        self.state.runner().clone().shutdown().await;
    }
}

async fn sim() -> Result<taskpod_sim::Sim> {
    let sim = taskpod_sim::Sim::start(taskpod_sim::SimOptions::default()).await?;
    let ns: Namespace = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "druid"}
    }))?;
    Api::<Namespace>::all(sim.client())
        .create(&PostParams::default(), &ns)
        .await?;
    Ok(sim)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strategy_and_capacity_change_at_run_time_with_history_and_survive_a_restart() -> Result<()>
{
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("taskpod.yaml"), CONFIG)?;
    std::fs::write(dir.path().join("base.yaml"), template("druid/base:1")?)?;
    std::fs::write(dir.path().join("wiki.yaml"), template("druid/wiki:1")?)?;
    let sim = sim().await?;
    let host = Host::start(dir.path(), &sim).await?;

    // The config file's strategy: by task type, so every datasource gets `base`.
    let (status, view) = host
        .call(Method::GET, "/v1/config/execution", &[], "")
        .await?;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["capacity"], 5);
    assert_eq!(
        view["podTemplateSelectStrategy"],
        json!({"type": "taskType"})
    );
    assert_eq!(view["adapters"]["templates"]["dynamic"], false);
    assert_eq!(host.rendered_image("wikipedia").await?, "druid/base:1");

    // Druid's body, on Druid's path, with Druid's audit headers.
    let strategy = json!({"type": "selectorBased", "selectors": [
        {"selectionKey": "wiki", "dataSource": ["wikipedia"]}
    ]});
    let (status, view) = host
        .call(
            Method::POST,
            "/druid/indexer/v1/k8s/taskrunner/executionconfig",
            &[
                ("X-Druid-Author", "alice"),
                ("X-Druid-Comment", "wiki on its own template"),
            ],
            &json!({"type": "default", "podTemplateSelectStrategy": strategy}).to_string(),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["podTemplateSelectStrategy"], strategy);
    assert_eq!(view["adapters"]["templates"]["dynamic"], true);
    assert_eq!(host.rendered_image("wikipedia").await?, "druid/wiki:1");
    assert_eq!(host.rendered_image("koalas").await?, "druid/base:1");

    // A strategy the adapter refuses (a selector key it does not know) changes nothing.
    let (status, body) = host
        .call(
            Method::POST,
            "/v1/config/execution",
            &[],
            &json!({"podTemplateSelectStrategy": {"type": "selectorBased", "selectors": [
                {"selectionKey": "wiki", "datasources": ["wikipedia"]}
            ]}})
            .to_string(),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "podTemplateSelectStrategy");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("datasources"), "{message}");
    assert_eq!(host.rendered_image("wikipedia").await?, "druid/wiki:1");

    // Bad bodies name the field.
    for (body, field) in [
        (json!({"capacity": 0}), "capacity"),
        (json!({"type": "other"}), "type"),
        (
            json!({"podTemplateSelectStrategy": "selectorBased"}),
            "podTemplateSelectStrategy",
        ),
        (json!({"capacty": 3}), "capacty"),
        (json!({}), "body"),
    ] {
        let (status, answer) = host
            .call(Method::POST, "/v1/config/execution", &[], &body.to_string())
            .await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{body}: {answer}");
    }

    // Capacity through the execution config.
    let (status, view) = host
        .call(
            Method::POST,
            "/v1/config/execution",
            &[("X-Taskpod-Author", "bob")],
            r#"{"capacity": 7}"#,
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["capacity"], 7);
    assert_eq!(host.state.runner().capacity(), 7);

    // The history: newest first, who, why, what, before and after; refused changes are absent.
    let (status, history) = host
        .call(Method::GET, "/v1/config/execution/history", &[], "")
        .await?;
    assert_eq!(status, StatusCode::OK, "{history}");
    let entries = history.as_array().context("history is an array")?;
    assert_eq!(entries.len(), 2, "{history}");
    assert_eq!(entries[0]["author"], "bob");
    assert_eq!(entries[0]["change"], json!({"capacity": 7}));
    assert_eq!(entries[0]["before"]["capacity"], 5);
    assert_eq!(entries[0]["after"]["capacity"], 7);
    assert_eq!(entries[1]["author"], "alice");
    assert_eq!(entries[1]["comment"], "wiki on its own template");
    assert_eq!(entries[1]["change"]["podTemplateSelectStrategy"], strategy);
    assert!(
        chrono::DateTime::parse_from_rfc3339(entries[1]["auditTime"].as_str().unwrap_or(""))
            .is_ok(),
        "{history}"
    );
    let (_, newest) = host
        .call(
            Method::GET,
            "/druid/indexer/v1/k8s/taskrunner/executionconfig/history?count=1",
            &[],
            "",
        )
        .await?;
    assert_eq!(newest.as_array().map(Vec::len), Some(1), "{newest}");
    assert_eq!(newest[0]["author"], "bob");

    // A restart keeps the strategy and the capacity.
    host.stop().await;
    let host = Host::start(dir.path(), &sim).await?;
    let (_, view) = host
        .call(Method::GET, "/v1/config/execution", &[], "")
        .await?;
    assert_eq!(view["capacity"], 7, "{view}");
    assert_eq!(view["adapters"]["templates"]["dynamic"], true, "{view}");
    assert_eq!(host.rendered_image("wikipedia").await?, "druid/wiki:1");

    // null goes back to the config file's strategy.
    let (status, view) = host
        .call(
            Method::POST,
            "/v1/config/execution",
            &[],
            r#"{"podTemplateSelectStrategy": null}"#,
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["adapters"]["templates"]["dynamic"], false, "{view}");
    assert_eq!(host.rendered_image("wikipedia").await?, "druid/base:1");
    host.stop().await;
    sim.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_files_are_read_again_when_they_change() -> Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("taskpod.yaml"), CONFIG)?;
    std::fs::write(dir.path().join("base.yaml"), template("druid/base:1")?)?;
    std::fs::write(dir.path().join("wiki.yaml"), template("druid/wiki:1")?)?;
    let sim = sim().await?;
    let host = Host::start(dir.path(), &sim).await?;
    assert_eq!(host.rendered_image("koalas").await?, "druid/base:1");

    // An edit is picked up by a later launch (files are checked at most once a second).
    std::fs::write(dir.path().join("base.yaml"), template("druid/base:2")?)?;
    let mut image = String::new();
    for _ in 0..50 {
        image = host.rendered_image("koalas").await?;
        if image == "druid/base:2" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(image, "druid/base:2", "the edited template was not used");

    // A broken edit keeps the last good template instead of failing launches.
    std::fs::write(dir.path().join("base.yaml"), "kind: NotATemplate\n")?;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(host.rendered_image("koalas").await?, "druid/base:2");

    // Fixed again: used again.
    std::fs::write(dir.path().join("base.yaml"), template("druid/base:3")?)?;
    let mut image = String::new();
    for _ in 0..50 {
        image = host.rendered_image("koalas").await?;
        if image == "druid/base:3" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(image, "druid/base:3");
    host.stop().await;
    sim.shutdown().await;
    Ok(())
}
