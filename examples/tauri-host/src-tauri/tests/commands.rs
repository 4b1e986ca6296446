//! The commands through Tauri's mock runtime (no display): a real `quarry` sidecar
//! (`$QUARRY_BIN`) under the app's supervisor indexes the document fixtures, searches,
//! reports status, and is gone after the app's exit event.

use serde_json::{Value, json};
use tauri::ipc::{CallbackFn, InvokeBody, InvokeResponseBody};
use tauri::test::{INVOKE_KEY, get_ipc_response, mock_builder, mock_context, noop_assets};
use tauri::webview::InvokeRequest;
use tauri::{Manager, WebviewWindowBuilder};

fn invoke(
    webview: &tauri::WebviewWindow<tauri::test::MockRuntime>,
    cmd: &str,
    args: Value,
) -> Result<Value, Value> {
    let request = InvokeRequest {
        cmd: cmd.into(),
        callback: CallbackFn(0),
        error: CallbackFn(1),
        url: "tauri://localhost".parse().unwrap(),
        body: InvokeBody::Json(args),
        headers: Default::default(),
        invoke_key: INVOKE_KEY.to_string(),
    };
    get_ipc_response(webview, request).map(|body| match body {
        InvokeResponseBody::Json(s) => serde_json::from_str(&s).unwrap(),
        InvokeResponseBody::Raw(b) => serde_json::from_slice(&b).unwrap(),
    })
}

fn alive(pid: u64) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn index_search_status_and_exit() {
    assert!(
        std::env::var_os("QUARRY_BIN").is_some(),
        "QUARRY_BIN must name the quarry binary under test"
    );
    let data = std::env::temp_dir().join(format!("quarry-tauri-mock-{}", std::process::id()));
    // SAFETY: set before the app (and any thread reading the environment) starts.
    unsafe { std::env::set_var("QUARRY_DATA_DIR", &data) };
    let app = quarry_tauri_host::app(mock_builder())
        .build(mock_context(noop_assets()))
        .expect("app");
    // The mock runtime does not run the setup hook (the real app does): start it here.
    if app.try_state::<quarry_tauri_host::Engine>().is_none() {
        app.manage(quarry_tauri_host::start(app.handle()).expect("engine"));
    }
    let webview = WebviewWindowBuilder::new(&app, "main", Default::default())
        .build()
        .expect("webview");
    let fixtures = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../tests/fixtures/documents"
    );

    let r = invoke(
        &webview,
        "index_folder",
        json!({"path": fixtures, "job": 1, "onProgress": "__CHANNEL__:7"}),
    )
    .expect("index");
    assert!(r["files"].as_u64().unwrap() > 5, "{r}");
    let hits = invoke(
        &webview,
        "search",
        json!({"query": "quartz lantern protocol"}),
    )
    .expect("search");
    let top = &hits[0];
    let place = top["place"].as_str().unwrap();
    assert!(
        place.contains("sample.pdf:") || place.contains("broken-xref.pdf:"),
        "{hits}"
    );
    assert_eq!(top["location"]["page"], 2);
    assert_eq!(
        top["snippet"]
            .as_str()
            .unwrap()
            .contains("quartz lantern protocol"),
        true
    );
    // Typed errors come back as the call's error.
    let e = invoke(&webview, "search", json!({"query": ""})).unwrap_err();
    assert!(e.as_str().unwrap().contains("query"), "{e}");
    assert_eq!(
        invoke(&webview, "cancel_index", json!({"job": 99})).unwrap(),
        false
    );

    // Cancel from the page: an index of 3,000 files cancelled while it runs.
    let many = data.join("many");
    std::fs::create_dir_all(&many).unwrap();
    for i in 0..3000 {
        std::fs::write(
            many.join(format!("f{i}.txt")),
            format!("file {i} of many words\n"),
        )
        .unwrap();
    }
    let (view, root) = (webview.clone(), many.to_string_lossy().into_owned());
    let running = std::thread::spawn(move || {
        invoke(
            &view,
            "index_folder",
            json!({"path": root, "job": 2, "onProgress": "__CHANNEL__:8"}),
        )
    });
    let asked = std::time::Instant::now();
    while invoke(&webview, "cancel_index", json!({"job": 2})).unwrap() != true {
        assert!(
            asked.elapsed().as_secs() < 20,
            "the index job never showed up"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(running.join().unwrap().unwrap_err(), "cancelled");

    let status = invoke(&webview, "status", json!({})).expect("status");
    assert_eq!(status["health"]["status"], "ok", "{status}");
    assert!(status["stats"].is_object(), "{status}");
    let pid = status["supervisor"]["pid"].as_u64().expect("a sidecar pid");
    assert!(alive(pid));

    quarry_tauri_host::on_run_event(app.handle(), tauri::RunEvent::Exit);
    assert!(!alive(pid), "the sidecar outlived the app's exit");
    let _ = std::fs::remove_dir_all(&data);
}
