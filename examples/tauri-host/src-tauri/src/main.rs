// No console window on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() {
    quarry_tauri_host::app(tauri::Builder::default())
        .build(tauri::generate_context!())
        .expect("the Tauri app builds")
        .run(quarry_tauri_host::on_run_event);
}
