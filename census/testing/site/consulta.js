// Page logic of the simulated "Consulta tu lugar de votación" form.
(function () {
  "use strict";
  var form = document.getElementById("consultaForm");
  var eleccion = document.getElementById("eleccion");
  var boton = document.getElementById("submitBtn");
  var mensaje = document.getElementById("mensaje");
  var resultado = document.getElementById("resultado");

  // The token the widget's callback handed over: the only one the form sends (as the
  // Registraduría's sister site does, the submit is enabled by the callback alone).
  var tokenCaptcha = "";
  window.captchaResuelto = function (token) {
    tokenCaptcha = token || "";
    boton.disabled = !tokenCaptcha;
  };
  window.captchaCaducado = function () {
    tokenCaptcha = "";
    boton.disabled = true;
  };

  function aviso(texto, esError) {
    mensaje.textContent = texto;
    mensaje.className = esError ? "mensaje error" : "mensaje";
    mensaje.hidden = false;
  }

  function limpiar() {
    mensaje.hidden = true;
    mensaje.textContent = "";
    resultado.textContent = "";
  }

  function tabla(titulos, fila) {
    var table = document.createElement("table");
    var head = table.createTHead().insertRow();
    titulos.forEach(function (t) {
      var th = document.createElement("th");
      th.textContent = t;
      head.appendChild(th);
    });
    var row = table.createTBody().insertRow();
    fila.forEach(function (v) {
      row.insertCell().textContent = v == null ? "" : String(v);
    });
    resultado.appendChild(table);
  }

  // Key case varies between answers (nuip / NUIP).
  function campo(data, nombre) {
    if (!data) return "";
    var v = data[nombre];
    if (v == null) v = data[nombre.toUpperCase()];
    return v == null ? "" : v;
  }

  // The document input: #documento, or #numeroDocumento in the "form_renamed" layout.
  function campoDocumento() {
    return document.getElementById("documento") || document.getElementById("numeroDocumento");
  }

  // The answer itself: the "wrapper" layout sends it as {"respuesta": {...}}.
  function desenvolver(r) {
    if (r && typeof r === "object" && !("ok" in r) && r.respuesta && typeof r.respuesta === "object") {
      return r.respuesta;
    }
    return r;
  }

  function mostrar(r) {
    r = desenvolver(r);
    if (!r || typeof r !== "object" || typeof r.ok !== "boolean") {
      aviso("Respuesta inesperada del servidor. Intente nuevamente.", true);
    } else if (!r.ok) {
      aviso(r.error || "No fue posible realizar la consulta.", true);
    } else if (r.encontrado || r.hallado) {  // "hallado": the "renamed_field" layout
      var d = r.data;
      tabla(["NUIP", "DEPARTAMENTO", "MUNICIPIO", "PUESTO", "DIRECCIÓN", "MESA"], [
        campo(d, "nuip"), campo(d, "nom_depto"), campo(d, "nom_mun"),
        campo(d, "nom_puesto"), campo(d, "direccion"), campo(d, "mesa")]);
    } else if (r.novedad) {
      var n = r.data || {};
      tabla(["NUIP", "NOVEDAD", "RESOLUCIÓN", "FECHA NOVEDAD"], [
        campo(n, "nuip"), campo(n, "novedad") || r.descripcion,
        campo(n, "resolucion"), campo(n, "fecha_novedad")]);
    } else {
      aviso(r.mensaje || "No se encontró información.", false);
    }
  }

  fetch("/back/api/elecciones")
    .then(function (res) { return res.json(); })
    .then(function (r) {
      eleccion.textContent = "";
      (r.data || []).forEach(function (e) {
        var opt = document.createElement("option");
        opt.value = String(e.id);
        opt.textContent = e.nombre;
        opt.title = e.mensaje || "";
        eleccion.appendChild(opt);
      });
    })
    .catch(function () { aviso("No fue posible cargar las elecciones.", true); });

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    limpiar();
    var documento = campoDocumento().value.replace(/[.\s-]/g, "");
    if (!/^\d{3,10}$/.test(documento)) {
      aviso("Ingrese un número de documento válido.", true);
      return;
    }
    if (eleccion.value === "") {
      aviso("Seleccione una elección.", true);
      return;
    }
    var token = tokenCaptcha;
    if (!token) {
      aviso("Por favor confirme que no es un robot.", true);
      return;
    }
    boton.disabled = true;
    aviso("Consultando...", false);
    fetch("/back/api/consulta", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ documento: documento, eleccionId: Number(eleccion.value), captchaToken: token })
    })
      .then(function (res) {
        var tipo = res.headers.get("Content-Type") || "";
        return res.text().then(function (cuerpo) {
          limpiar();
          if (tipo.indexOf("text/html") !== -1) {
            // Block and error pages replace the whole page, so they are visible as such.
            document.open();
            document.write(cuerpo);
            document.close();
            return;
          }
          var r = null;
          try { r = JSON.parse(cuerpo); } catch (e) { r = null; }
          mostrar(r);
        });
      })
      .catch(function () {
        limpiar();
        aviso("No fue posible conectar con el servidor. Intente nuevamente.", true);
      })
      .then(function () {
        // A token is good for one consulta only: the next needs the widget again.
        tokenCaptcha = "";
        boton.disabled = true;
        if (window.grecaptcha) window.grecaptcha.reset();
      });
  });
})();
