//! The cron export on WASIp3: the `spin:cron@3.0.0` world of trigger-cron 0.5 (Spin 4),
//! an async handler. Generated with the SDK's own wit-bindgen so that tasks the handler
//! spawns (the SDK's outbound HTTP does) run on the same executor.

spin_sdk6::wit_bindgen::generate!({
    path: "../../wit/spin-cron@3.0.0/spin-cron.wit",
    world: "spin:cron/spin-cron",
    runtime_path: "spin_sdk6::wit_bindgen::rt",
    pub_export_macro: true,
    export_macro_name: "export_cron",
    default_bindings_module: "evolve_platform::sdk::cron",
});

/// Exports `$handler`, an `async fn(fired_at_seconds: u64) -> Result<(), String>`, as
/// the component's cron handler.
#[macro_export]
macro_rules! cron_component {
    ($handler:ident) => {
        mod __evolve_cron_export {
            use $crate::sdk::cron;

            struct Component;

            impl cron::Guest for Component {
                async fn handle_cron_event(metadata: cron::Metadata) -> Result<(), cron::Error> {
                    super::$handler(metadata.timestamp)
                        .await
                        .map_err(cron::Error::Other)
                }
            }

            cron::export_cron!(Component with_types_in $crate::sdk::cron);
        }
    };
}
