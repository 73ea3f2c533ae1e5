// /docs: the API described from /openapi.json. Every text goes in as text (textContent);
// only `code` spans become <code> elements. A body's $ref is resolved to its schema's fields.
(function () {
  "use strict";

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined) { e.textContent = text; }
    if (cls) { e.className = cls; }
    return e;
  }

  // Text with `code` spans as <code>; everything else stays text (escaped by the DOM).
  function prose(tag, text) {
    var e = el(tag);
    String(text || "").split("`").forEach(function (part, i) {
      if (i % 2) { e.appendChild(el("code", part)); } else if (part) { e.appendChild(document.createTextNode(part)); }
    });
    return e;
  }

  // Sentences as their own paragraphs: summary, then the description.
  function paragraphs(box, texts) {
    texts.filter(Boolean).forEach(function (text) { box.appendChild(prose("p", text)); });
  }

  function resolve(doc, schema) {
    var seen = 0;
    while (schema && schema.$ref && seen++ < 10) {
      var name = schema.$ref.split("/").pop();
      schema = doc.components.schemas[name];
    }
    return schema || {};
  }

  function typeOf(doc, schema) {
    if (!schema) { return ""; }
    if (schema.$ref) { return schema.$ref.split("/").pop(); }
    if (schema.anyOf) { return schema.anyOf.map(function (s) { return typeOf(doc, s); }).join(" or "); }
    if (schema.type === "array") { return "array of " + typeOf(doc, schema.items); }
    if (schema.enum) { return schema.enum.map(function (v) { return JSON.stringify(v); }).join(" | "); }
    return [].concat(schema.type || "any").join(" or ") + (schema.format ? " (" + schema.format + ")" : "");
  }

  function fields(doc, schema) {
    var resolved = resolve(doc, schema);
    var box = el("div");
    if (schema && schema.$ref) { box.appendChild(prose("p", "`" + schema.$ref.split("/").pop() + "`, an object:")); }
    if (resolved.description) { box.appendChild(prose("p", resolved.description)); }
    var props = resolved.properties || {};
    var required = resolved.required || [];
    var names = Object.keys(props);
    if (!names.length) { box.appendChild(el("pre", JSON.stringify(resolved, null, 2))); return box; }
    var table = el("table", undefined, "fields");
    names.forEach(function (name) {
      var prop = props[name];
      var row = el("tr");
      var cell = el("td"); cell.appendChild(el("code", name)); row.appendChild(cell);
      row.appendChild(el("td", typeOf(doc, prop) + (required.indexOf(name) >= 0 ? ", required" : "")));
      row.appendChild(prose("td", prop.description || resolve(doc, prop).description || ""));
      table.appendChild(row);
    });
    box.appendChild(table);
    return box;
  }

  function render(doc) {
    var root = document.getElementById("doc");
    root.textContent = "";
    root.appendChild(prose("p", doc.info.description));
    root.appendChild(el("h2", "Routes"));
    Object.keys(doc.paths).forEach(function (path) {
      var ops = doc.paths[path];
      Object.keys(ops).forEach(function (method) {
        var op = ops[method];
        var box = el("div", undefined, "op " + method);
        var h = el("h3"); h.appendChild(el("span", method, "m")); h.appendChild(el("code", path)); box.appendChild(h);
        paragraphs(box, [op.summary, op.description]);
        if (op.parameters && op.parameters.length) {
          var params = el("ul");
          op.parameters.forEach(function (p) {
            var li = prose("li", " (" + p.in + ", " + typeOf(doc, p.schema) + ") " + (p.description || ""));
            li.insertBefore(el("code", p.name), li.firstChild);
            params.appendChild(li);
          });
          box.appendChild(el("h4", "Parameters")); box.appendChild(params);
        }
        if (op.requestBody) {
          box.appendChild(el("h4", "Body"));
          var body = op.requestBody.content["application/json"].schema;
          box.appendChild(fields(doc, body));
        }
        var answers = el("ul");
        Object.keys(op.responses).forEach(function (code) {
          var li = prose("li", " " + op.responses[code].description);
          li.insertBefore(el("strong", code), li.firstChild);
          answers.appendChild(li);
        });
        box.appendChild(el("h4", "Responses")); box.appendChild(answers);
        root.appendChild(box);
      });
    });
    root.appendChild(el("h2", "Schemas"));
    Object.keys(doc.components.schemas).forEach(function (name) {
      root.appendChild(el("h3", name));
      root.appendChild(fields(doc, doc.components.schemas[name]));
    });
  }

  fetch("/openapi.json")
    .then(function (r) { return r.json(); })
    .then(render)
    .catch(function (e) { document.getElementById("doc").textContent = "cannot load openapi.json: " + e; });
})();
