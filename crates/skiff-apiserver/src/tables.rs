//! Table rendering for `kubectl get`: upstream columns per kind (skiff-api's printers) and
//! CRD `additionalPrinterColumns`.

use serde_json::Value;
use skiff_api::table::{self, IncludeObject, PrinterColumn, TableOptions};

use crate::http::Request;
use crate::resources::Served;

/// Render `objects` as a `meta.k8s.io/v1` Table, as the request's `includeObject` asks.
pub fn render(served: &Served, objects: &[Value], req: &Request, rv: String, cont: Option<String>) -> Value {
    let include = IncludeObject::parse(req.query.get("includeObject").unwrap_or("")).unwrap_or_default();
    render_with(served, objects, include, rv, cont)
}

/// Render `objects` as a Table with an explicit `includeObject`.
pub fn render_with(served: &Served, objects: &[Value], include: IncludeObject, rv: String, cont: Option<String>) -> Value {
    let mut opts = TableOptions::new(chrono::Utc::now());
    opts.include_object = include;
    opts.resource_version = rv;
    opts.continue_token = cont;
    match &served.custom {
        Some(custom) => {
            let columns: Vec<PrinterColumn> =
                custom.printer_columns.iter().filter_map(|c| serde_json::from_value(c.clone()).ok()).collect();
            table::custom_table(&columns, objects, &opts)
        }
        None => table::table(&served.info.group, &served.info.plural, objects, &opts),
    }
}
