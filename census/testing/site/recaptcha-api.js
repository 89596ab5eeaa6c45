// A local stand-in for reCAPTCHA v2's api.js: renders the checkbox widget into every
// div.g-recaptcha[data-sitekey] (or where grecaptcha.render is called) and exposes
// grecaptcha.getResponse() / reset() / render(). Like the real api.js it keeps each
// widget's parameters in window.___grecaptcha_cfg.clients, nested under short,
// meaningless keys, and hands a token to the widget's callback (data-callback, or the
// callback given to render): pages that act on the callback see nothing of a token
// written only into the textarea.
(function () {
  "use strict";
  var widgets = [];
  var cfg = window.___grecaptcha_cfg = window.___grecaptcha_cfg || { count: 0, clients: {} };

  // A data-callback names a global function; render() may pass the function itself.
  function llamar(callback, arg) {
    var fn = typeof callback === "function" ? callback : window[callback];
    if (typeof fn === "function") {
      try { fn(arg); } catch (e) { /* the page's error, not the widget's */ }
    }
  }

  function nombre(prefijo) {
    return prefijo + "-" + Math.random().toString(36).slice(2, 12);
  }

  function render(el, params) {
    params = params || {};
    var key = params.sitekey || el.getAttribute("data-sitekey");
    var id = cfg.count++;
    var cliente = {
      callback: params.callback || el.getAttribute("data-callback") || null,
      "expired-callback": params["expired-callback"] || el.getAttribute("data-expired-callback") || null,
      sitekey: key,
      size: "normal"
    };
    // The real structure nests the parameters two obfuscated levels down.
    cfg.clients[id] = { id: id, V: { V: cliente } };
    var caja = document.createElement("div");
    caja.style.cssText = "width: 304px; height: 78px;";
    var anchor = document.createElement("iframe");
    anchor.title = "reCAPTCHA";
    anchor.name = nombre("a");
    anchor.width = "304";
    anchor.height = "78";
    anchor.setAttribute("frameborder", "0");
    anchor.setAttribute("scrolling", "no");
    anchor.src = "/recaptcha/api2/anchor?ar=1&k=" + encodeURIComponent(key) +
      "&hl=es&size=normal&cb=" + nombre("cb");
    var respuesta = document.createElement("textarea");
    respuesta.id = "g-recaptcha-response";
    respuesta.name = "g-recaptcha-response";
    respuesta.className = "g-recaptcha-response";
    respuesta.style.cssText = "width: 250px; height: 40px; margin: 10px 25px; padding: 0; resize: none; display: none;";
    caja.appendChild(anchor);
    caja.appendChild(respuesta);
    el.appendChild(caja);

    // Like the real widget, the challenge frame is in the page from the start, hidden far
    // off-screen; a challenge makes it visible. Its mere presence means nothing.
    var reto = document.createElement("div");
    reto.style.cssText = "visibility: hidden; position: absolute; width: 100%; top: -10000px; left: 0; right: 0; opacity: 0;";
    var velo = document.createElement("div");
    velo.style.cssText = "width: 100%; height: 100%; position: fixed; top: 0; left: 0; background: #fff; opacity: 0.5;";
    var marco = document.createElement("div");
    marco.style.cssText = "position: absolute; left: 50%; margin-left: -200px; top: 0; background: #fff; border: 1px solid #ccc; box-shadow: 2px 2px 3px rgba(0,0,0,.2);";
    var bframe = document.createElement("iframe");
    bframe.title = "recaptcha challenge expires in two minutes";
    bframe.name = nombre("c");
    bframe.width = "400";
    bframe.height = "580";
    bframe.setAttribute("frameborder", "0");
    bframe.setAttribute("scrolling", "no");
    bframe.src = "/recaptcha/api2/bframe?hl=es&k=" + encodeURIComponent(key);
    marco.appendChild(bframe);
    reto.appendChild(velo);
    reto.appendChild(marco);
    document.body.appendChild(reto);
    widgets.push({ anchor: anchor, respuesta: respuesta, reto: reto, cliente: cliente });
    return id;
  }

  function ocultarReto(w) {
    w.reto.style.visibility = "hidden";
    w.reto.style.top = "-10000px";
    w.reto.style.opacity = "0";
  }

  window.grecaptcha = {
    getResponse: function () {
      return widgets.length ? widgets[0].respuesta.value : "";
    },
    reset: function () {
      widgets.forEach(function (w) {
        w.respuesta.value = "";
        ocultarReto(w);
        // Reloading the anchor unchecks the box and drops any pending expiry timer.
        w.anchor.src = w.anchor.src;
      });
    },
    render: function (contenedor, params) {
      var el = typeof contenedor === "string" ? document.getElementById(contenedor) : contenedor;
      return render(el, params);
    },
    // Called by the anchor frame (same origin) with a token: into the textarea, then the
    // widget's callback.
    _entregar: function (token) {
      widgets.forEach(function (w) {
        w.respuesta.value = token;
        ocultarReto(w);
        llamar(w.cliente.callback, token);
      });
    },
    // Called by the anchor frame when its token expired.
    _caducar: function () {
      widgets.forEach(function (w) {
        w.respuesta.value = "";
        llamar(w.cliente["expired-callback"]);
      });
    },
    // Called by the anchor frame (same origin) when the site asks for an image challenge.
    _mostrarReto: function () {
      widgets.forEach(function (w) {
        w.reto.style.visibility = "visible";
        w.reto.style.top = "10px";
        w.reto.style.opacity = "1";
      });
    }
  };

  function iniciar() {
    document.querySelectorAll(".g-recaptcha[data-sitekey]").forEach(function (el) { render(el); });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", iniciar);
  } else {
    iniciar();
  }
})();
