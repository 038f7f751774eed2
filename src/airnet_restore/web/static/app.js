"use strict";
// The page of `airnet serve`: upload with progress, a before/after slider, download of the full result.
const $ = (id) => document.getElementById(id);
let health = null;
let urls = [];

async function refreshHealth() {
  health = await (await fetch("/api/health")).json();
  $("model").textContent = `model ${health.model} on ${health.device}`;
}

function say(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function progress(fraction, text) {
  $("busy").hidden = false;
  if (fraction === null) $("progress").removeAttribute("value");
  else $("progress").value = fraction;
  $("progress-text").textContent = text;
}

function pixelsOf(url) {
  return new Promise((resolve) => {
    const img = new Image();
    img.onload = () => resolve(img.naturalWidth * img.naturalHeight);
    img.onerror = () => resolve(null);
    img.src = url;
  });
}

async function send(file) {
  if (health && file.size > health.max_bytes) {
    say(`${file.name} is ${file.size.toLocaleString()} bytes; this server takes up to ${health.max_bytes.toLocaleString()}.`, true);
    return;
  }
  urls.forEach(URL.revokeObjectURL);
  const before = URL.createObjectURL(file);
  urls = [before];
  for (const id of ["compare", "download", "detected"]) $(id).hidden = true;
  say(`Restoring ${file.name}…`);
  progress(0, "uploading");
  const pixels = await pixelsOf(before);
  const form = new FormData();
  form.append("image", file, file.name);
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/api/restore");
  xhr.responseType = "blob";
  xhr.upload.onprogress = (e) => e.lengthComputable && progress(0.2 * e.loaded / e.total, "uploading");
  let ticker = null;
  xhr.upload.onload = async () => {
    const start = performance.now();
    await refreshHealth().catch(() => null);
    const rate = health && health.seconds_per_megapixel;
    const estimate = rate && pixels ? rate * pixels / 1e6 : null;
    ticker = setInterval(() => {
      if (xhr.readyState === XMLHttpRequest.DONE) return clearInterval(ticker);
      const s = (performance.now() - start) / 1000;
      if (estimate) progress(0.2 + 0.8 * Math.min(0.97, s / estimate), `restoring: ${s.toFixed(0)} s of about ${Math.ceil(estimate)} s`);
      else progress(null, `restoring: ${s.toFixed(0)} s`);
    }, 250);
  };
  xhr.onloadend = () => clearInterval(ticker);
  xhr.onerror = () => { $("busy").hidden = true; say("The server could not be reached.", true); };
  xhr.onload = () => (xhr.status === 200 ? show(xhr, file, before) : fail(xhr));
  xhr.send(form);
  $("file").value = "";
}

async function fail(xhr) {
  $("busy").hidden = true;
  let message = `error ${xhr.status}`;
  try { message = JSON.parse(await xhr.response.text()).error; } catch (e) { /* not JSON: keep the status */ }
  say(`Not restored: ${message}`, true);
}

function show(xhr, file, before) {
  const after = URL.createObjectURL(xhr.response);
  urls.push(after);
  const name = /filename="([^"]+)"/.exec(xhr.getResponseHeader("Content-Disposition") || "");
  $("download").href = after;
  $("download").download = name ? name[1] : "restored.png";
  $("after").src = after;
  $("before").src = before;
  $("before").onerror = () => { $("before").hidden = true; say(`Restored ${file.name}; this browser cannot show the original (TIFF?), so there is no slider.`); };
  $("before").hidden = false;
  $("compare").hidden = false;
  $("download").hidden = false;
  $("busy").hidden = true;
  showDetected(xhr.getResponseHeader("X-Airnet-Detected"));
  say(`Restored ${file.name}. Drag across the picture to compare; the download is full size and depth (PNG).`);
}

// The detected corruption and the blend (strength, anchor) applied: sent where the weights hold degradation prototypes.
function showDetected(header) {
  if (!header) return;
  const found = JSON.parse(header);
  const extra = Object.entries(found).filter(([k]) => k !== "type")
    .map(([k, v]) => `${k} ${typeof v === "number" ? +v.toFixed(2) : v}`).join(", ");
  $("detected").textContent = `Detected: ${found.type}${extra ? ` (${extra})` : ""}`;
  $("detected").hidden = false;
}

const drop = $("drop");
for (const type of ["dragenter", "dragover"]) drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add("over"); });
for (const type of ["dragleave", "drop"]) drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.remove("over"); });
drop.addEventListener("drop", (e) => e.dataTransfer.files[0] && send(e.dataTransfer.files[0]));
$("file").addEventListener("change", () => $("file").files[0] && send($("file").files[0]));
$("slider").addEventListener("input", () => $("frame").style.setProperty("--pos", `${$("slider").value}%`));
refreshHealth().catch(() => say("The server could not be reached.", true));
