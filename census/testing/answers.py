"""The JSON answers of the simulated ``POST /back/api/consulta``, deterministic per cédula.

The places are plausible but invented: real departments and cities with made-up polling
stations, so nothing here describes a real person's voting place.
"""

from __future__ import annotations

import hashlib
from typing import Any

from census.testing.scenarios import Scenario

# (departamento, municipio, DIVIPOL department+municipality code, lat, lng)
_CITIES: tuple[tuple[str, str, str, float, float], ...] = (
    ("BOGOTA D.C.", "BOGOTA. D.C.", "16001", 4.6486, -74.1026),
    ("ANTIOQUIA", "MEDELLIN", "01001", 6.2442, -75.5812),
    ("VALLE", "CALI", "31001", 3.4516, -76.5320),
    ("ATLANTICO", "BARRANQUILLA", "03001", 10.9685, -74.7813),
    ("SANTANDER", "BUCARAMANGA", "27001", 7.1193, -73.1227),
    ("BOLIVAR", "CARTAGENA", "05001", 10.3910, -75.4794),
    ("CUNDINAMARCA", "SOACHA", "15730", 4.5794, -74.2168),
    ("RISARALDA", "PEREIRA", "24001", 4.8133, -75.6961),
    ("NARIÑO", "PASTO", "23001", 1.2136, -77.2811),
    ("BOYACA", "TUNJA", "07001", 5.5353, -73.3678),
)
_SCHOOLS: tuple[str, ...] = (
    "INSTITUCION EDUCATIVA JOSE ANTONIO GALAN",
    "COLEGIO NACIONAL SIMON BOLIVAR",
    "ESCUELA NORMAL SUPERIOR MARIA AUXILIADORA",
    "COLEGIO DEPARTAMENTAL POLICARPA SALAVARRIETA",
    "INSTITUCION EDUCATIVA FRANCISCO DE PAULA SANTANDER",
    "COLEGIO DISTRITAL ANTONIO NARIÑO",
    "COLISEO CUBIERTO MUNICIPAL",
    "UNIVERSIDAD PUBLICA SEDE CENTRO",
)
_STREETS: tuple[str, ...] = ("CL", "CR", "AV", "DG", "TV")
_LOCALITIES: tuple[str, ...] = (
    "USAQUEN",
    "CHAPINERO",
    "SANTA FE",
    "SAN CRISTOBAL",
    "KENNEDY",
    "ENGATIVA",
    "SUBA",
    "BOSA",
)

#: The novelty text of each novelty scenario (``3x``), as the site words it.
NOVEDADES: dict[Scenario, str] = {
    Scenario.CANCELLED_DEATH: "Cancelada por Muerte",
    Scenario.CANCELLED_DOUBLE: "Cancelada por Doble Cedulación",
    Scenario.CANCELLED_RIGHTS: "Cancelada por Pérdida o Suspensión de los Derechos Políticos",
    Scenario.NOVEDAD_RIGHTS_VALID: "Vigente con Pérdida o Suspensión de los Derechos Políticos",
    Scenario.NOVEDAD_RIGHTS_REMOVED: "Baja por Pérdida o Suspensión de los Derechos Políticos",
    Scenario.NOVEDAD_NOT_ENABLED: "no se encuentra habilitado para votar",
    Scenario.NOVEDAD_PENDING: "Pendiente por Solicitud en proceso",
    Scenario.CANCELLED_FALSE_IDENTITY: "Cancelada por Falsa Identidad",
    # No wording census knows: read as an answer in no known shape, never a guess.
    Scenario.NOVEDAD_UNKNOWN: "En verificación de identidad",
}
#: The message of ``not_found_reworded``: a not-found answer without the phrase.
REWORDED_NOT_FOUND = "La cédula {cedula} no registra información para esta elección"


def _digest(cedula: str) -> bytes:
    # A hash rather than the raw digits, so cédulas sharing a prefix still spread out.
    return hashlib.sha256(f"census-simulator:{cedula}".encode()).digest()


def found(cedula: str, scenario: Scenario = Scenario.FOUND) -> dict[str, Any]:
    """``{"ok": true, "encontrado": true, "data": {...}, "mapa": {...}}`` for this cédula."""
    h = _digest(cedula)
    depto, municipio, divipol, lat, lng = _CITIES[h[0] % len(_CITIES)]
    school = _SCHOOLS[h[1] % len(_SCHOOLS)]
    address = f"{_STREETS[h[2] % len(_STREETS)]} {h[3] % 120 + 1} # {h[4] % 90 + 1}-{h[5] % 99:02d}"
    zona, puesto_no = h[6] % 20 + 1, h[7] % 30 + 1
    data: dict[str, Any] = {
        "nuip": cedula,
        "nom_depto": depto,
        "nom_mun": municipio,
        "nom_puesto": f"PUESTO {puesto_no:02d} - {school}",
        "direccion": address,
        "mesa": str(h[8] % 40 + 1),
        "fingreso": f"{2000 + h[9] % 24}-{h[10] % 12 + 1:02d}-{h[11] % 28 + 1:02d}",
        "coddivipol": f"{divipol}{zona:02d}{puesto_no:02d}",
    }
    if scenario is Scenario.FOUND_LOCALITY:
        # As in one real answer: the locality where the station name should be.
        data.update(
            nom_depto="BOGOTA D.C.",
            nom_mun="BOGOTA. D.C.",
            nom_puesto=_LOCALITIES[h[12] % len(_LOCALITIES)],
            direccion=school,
        )
        lat, lng = _CITIES[0][3], _CITIES[0][4]
    if scenario is Scenario.FOUND_WITHOUT_CODDIVIPOL:
        del data["coddivipol"]
    if scenario is Scenario.FOUND_UPPER:
        data = {key.upper(): value for key, value in data.items()}
    lat += (h[13] - 128) / 5000
    lng += (h[14] - 128) / 5000
    mapa = {
        "lat": round(lat, 6),
        "lng": round(lng, 6),
        "url": f"https://www.google.com/maps?q={lat:.6f},{lng:.6f}",
    }
    return {"ok": True, "encontrado": True, "data": data, "mapa": mapa}


def not_found(cedula: str, scenario: Scenario = Scenario.NOT_FOUND) -> dict[str, Any]:
    """The not-found answer; like the real one, its message echoes the number. Reworded
    (``not_found_reworded``), the message lacks "no se encuentra en el censo"."""
    message = f"La cédula {cedula} no se encuentra en el censo para esta elección"
    if scenario is Scenario.NOT_FOUND_REWORDED:
        message = REWORDED_NOT_FOUND.format(cedula=cedula)
    return {"ok": True, "encontrado": False, "mensaje": message}


def cancelled(cedula: str, scenario: Scenario) -> dict[str, Any]:
    """The novelty answer (cancelled, or another ``NOVEDADES`` wording): truthy ``novedad``
    plus a ``data`` record."""
    h = _digest(cedula)
    novedad = NOVEDADES[scenario]
    year = 2010 + h[2] % 15
    return {
        "ok": True,
        "encontrado": False,
        "novedad": True,
        "mensaje": f"La cédula {cedula} presenta una novedad: {novedad}",
        "descripcion": novedad,
        "data": {
            "nuip": cedula,
            "novedad": novedad,
            "resolucion": f"{int.from_bytes(h[:2]) % 9000 + 100:04d} de {year}",
            "fecha_novedad": f"{year}-{h[3] % 12 + 1:02d}-{h[4] % 28 + 1:02d}",
        },
    }


#: Length of the stretched text fields of the ``*_long_fields`` scenarios.
LONG_FIELD_CHARS = 10_000
#: Length (digits) of the stretched ``mesa`` of ``found_long_fields``.
LONG_MESA_DIGITS = 500


def _stretch(text: str, length: int, separator: str = " / ") -> str:
    """``text`` repeated to exactly ``length`` characters, without white space at either end."""
    repeats = length // (len(text) + len(separator)) + 1
    stretched = separator.join([text] * repeats)[:length]
    return stretched if not stretched[-1].isspace() else stretched[:-1] + "."


def found_long_fields(cedula: str) -> dict[str, Any]:
    """Found, with ``nom_puesto``/``direccion`` of 10,000 characters and a 500-digit ``mesa``."""
    payload = found(cedula)
    data = payload["data"]
    data["nom_puesto"] = _stretch(data["nom_puesto"], LONG_FIELD_CHARS)
    data["direccion"] = _stretch(data["direccion"], LONG_FIELD_CHARS)
    data["mesa"] = (data["mesa"] * LONG_MESA_DIGITS)[:LONG_MESA_DIGITS]
    return payload


def cancelled_long_fields(cedula: str) -> dict[str, Any]:
    """Cancelled, with ``novedad`` (and ``descripcion``) and ``resolucion`` of 10,000 chars."""
    payload = cancelled(cedula, Scenario.CANCELLED_DEATH)
    novedad = _stretch(NOVEDADES[Scenario.CANCELLED_DEATH], LONG_FIELD_CHARS)
    payload["mensaje"] = f"La cédula {cedula} presenta una novedad: {novedad}"
    payload["descripcion"] = novedad
    payload["data"]["novedad"] = novedad
    payload["data"]["resolucion"] = _stretch(payload["data"]["resolucion"], LONG_FIELD_CHARS)
    return payload


def error(message: str) -> dict[str, Any]:
    """``{"ok": false, "error": message}``."""
    return {"ok": False, "error": message}


#: The scenarios whose consulta gets an application answer of its own from ``answer``
#: (found, not found, novelties): the fake scraper's ``answer:<scenario>`` steps.
ANSWER_SCENARIOS = frozenset(
    {
        Scenario.FOUND,
        Scenario.FOUND_LOCALITY,
        Scenario.FOUND_UPPER,
        Scenario.FOUND_WITHOUT_CODDIVIPOL,
        Scenario.NOT_FOUND,
        Scenario.NOT_FOUND_REWORDED,
        *NOVEDADES,
        Scenario.FOUND_LONG_FIELDS,
        Scenario.CANCELLED_LONG_FIELDS,
    }
)


def answer(cedula: str, scenario: Scenario) -> dict[str, Any]:
    """The JSON answer of an accepted consulta for this scenario (found unless it says else)."""
    if scenario in (Scenario.NOT_FOUND, Scenario.NOT_FOUND_REWORDED):
        return not_found(cedula, scenario)
    if scenario in NOVEDADES:
        return cancelled(cedula, scenario)
    if scenario is Scenario.FOUND_LONG_FIELDS:
        return found_long_fields(cedula)
    if scenario is Scenario.CANCELLED_LONG_FIELDS:
        return cancelled_long_fields(cedula)
    if scenario in (
        Scenario.FOUND_LOCALITY,
        Scenario.FOUND_UPPER,
        Scenario.FOUND_WITHOUT_CODDIVIPOL,
    ):
        return found(cedula, scenario)
    return found(cedula)
