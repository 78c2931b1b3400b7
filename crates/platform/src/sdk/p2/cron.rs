//! The cron export on WASIp2: the `fermyon:spin-cron@2.0.0` world of trigger-cron 0.4
//! (Spin 3), whose handler is synchronous; the job runs on the SDK's executor.

wit_bindgen::generate!({
    path: "../../wit/spin-cron.wit",
    world: "fermyon:spin-cron/spin-cron",
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
                fn handle_cron_event(metadata: cron::Metadata) -> Result<(), cron::Error> {
                    $crate::sdk::block_on(super::$handler(metadata.timestamp))
                        .map_err(cron::Error::Other)
                }
            }

            cron::export_cron!(Component with_types_in $crate::sdk::cron);
        }
    };
}
