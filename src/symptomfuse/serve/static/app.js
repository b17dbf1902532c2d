// symptomfuse live: camera + microphone to the server over WebRTC, predictions back over a data channel.
// Research tool, not a diagnosis. URL options: ?autostart=1 starts at once (tests);
// ?latency=1 records when each encoded video frame leaves this page, to time capture -> prediction.
"use strict";
const params = new URLSearchParams(location.search);
const $ = id => document.getElementById(id);
// The modalities, their indicator names and what their gates can say come from the server (the model's
// export: /health and the offer's answer), so that a new modality needs no change here.
let MODS = [], QUALITY_NAME = {};
const COLORS = ["#2271b1", "#8c8f94", "#00a32a", "#dba617", "#9b51e0", "#135e96"];
const QUALITY_TEXT = {                         // the engine's quality gates (symptomfuse.stream.quality)
  ok: "ok", silence: "silence", no_voice: "no voice", no_data: "no data", black: "dark picture",
  frozen: "frozen picture", no_hand: "no hand in view", no_landmarks: "no hand detector",
  landmarks_behind: "hand detector behind" };

// State the tests and the benchmark read (window.sf); nothing here leaves the page except the offer.
const sf = window.sf = { state: "idle", session: null, events: [], latencies: [], error: null, log: [], videoFps: [] };
let chart = new ProbChart($("chart"), [{ key: "fused", label: "fused", color: "#d63638", width: 3 }]);

// Build the quality chips, the table of current values and the chart's series for the model's modalities.
function setup(info) {
  if (!info || !info.modalities) return;
  MODS = info.modalities;
  QUALITY_NAME = Object.fromEntries(MODS.map(m => [m, (info.live && info.live[m] && info.live[m].label) || m]));
  $("quality").replaceChildren(...MODS.map(m => {
    const chip = document.createElement("span");
    chip.id = `q-${m}`; chip.className = "chip"; chip.textContent = `${QUALITY_NAME[m]}: -`;
    return chip;
  }));
  const head = $("now-head"), row = $("now-row");
  head.replaceChildren(head.firstElementChild, ...MODS.map(m => Object.assign(document.createElement("th"), { textContent: m })),
                       Object.assign(document.createElement("th"), { textContent: "fused" }));
  row.replaceChildren(row.firstElementChild, ...MODS.map(m => Object.assign(document.createElement("td"), { id: `p-${m}`, textContent: "-" })),
                      Object.assign(document.createElement("td"), { id: "p-fused", textContent: "-" }));
  chart = new ProbChart($("chart"), [
    ...MODS.map((m, i) => ({ key: m, label: m, color: COLORS[i % COLORS.length], dash: i % 2 ? [4, 3] : undefined })),
    { key: "fused", label: "fused", color: "#d63638", width: 3 },
  ]);
}
fetch("/health").then(r => r.ok ? r.json() : null).then(setup).catch(() => {});
let pc = null, channel = null, stream = null, t0 = null;
// The video sender's own counters (frames encoded and sent, why quality was limited), for diagnostics.
sf.sendStats = async () => {
  if (!pc) return null;
  const out = [];
  (await pc.getStats()).forEach(r => {
    if (r.type === "outbound-rtp" && r.kind === "video") {
      out.push({ framesEncoded: r.framesEncoded, framesSent: r.framesSent, fps: r.framesPerSecond,
                 width: r.frameWidth, height: r.frameHeight, limitedBy: r.qualityLimitationReason,
                 encodeMsPerFrame: r.framesEncoded ? 1000 * r.totalEncodeTime / r.framesEncoded : null });
    }
  });
  return out;
};
const sentAt = new Map();                      // RTP timestamp of an encoded video frame -> performance.now()
let firstSent = null;                          // the first encoded video frame's RTP timestamp

function setStatus(text, state) {
  $("status").textContent = text;
  if (state) sf.state = state;
}
function record(kind, fields) {
  const entry = { time: Date.now() / 1000, type: kind, session: sf.session, ...fields };
  sf.log.push(entry);
  return entry;
}
function fmt(p) { return (p === null || p === undefined) ? "-" : p.toFixed(2); }

function showQuality(mod, q, unlike) {
  const chip = $(`q-${mod}`);
  if (!chip) return;
  const text = q ? (QUALITY_TEXT[q] || String(q).replace(/_/g, " ")) : "-";
  chip.textContent = `${QUALITY_NAME[mod]}: ${text}` + (unlike ? " (unlike the training data)" : "");
  chip.className = "chip " + (!q ? "" : (q === "ok" && !unlike ? "ok" : "bad"));
}

function onPrediction(msg) {
  const ev = msg.event, now = performance.now();
  sf.events.push(ev);
  sf.videoFps.push(msg.video_fps);              // frames a second the server received, for diagnostics
  // The page's RTP timestamps lack the random offset the sender adds on the wire; the first video frame
  // the server decoded is the first one this page encoded, so their difference is that offset.
  if (msg.video_rtp == null) sf.videoLate = (sf.videoLate || 0) + 1;   // window closed without its video
  else if (msg.video_first_rtp != null && firstSent !== null) {
    const key = (msg.video_rtp - ((msg.video_first_rtp - firstSent) >>> 0)) >>> 0;
    if (sentAt.has(key)) sf.latencies.push(now - sentAt.get(key)); else sf.unmatched = (sf.unmatched || 0) + 1;
  }
  const mods = ev.modalities || {}, values = {};
  for (const m of MODS) {
    const v = mods[m] ? mods[m].p : null;
    values[m] = v;
    const absent = sf.modalities && !sf.modalities.includes(m);
    if ($(`p-${m}`)) $(`p-${m}`).textContent = absent ? "n/a" : fmt(v);
    showQuality(m, mods[m] ? mods[m].quality : null, mods[m] && mods[m].unlike_training);
  }
  const fused = ev.fused || {};
  values.fused = fused.p;
  $("p-fused").textContent = fmt(fused.p);
  const unlike = fused.unlike_training || [];
  $("fused-label").textContent = unlike.length
    ? `fused: abstains (${unlike.join(", ")} unlike anything the model was trained on)`
    : fused.abstain ? "fused: abstains (too uncertain)"
    : `fused: the model's top class is "${fused.label ?? "-"}"` +
      (fused.uncertainty != null ? ` (uncertainty ${fused.uncertainty.toFixed(2)})` : "") + ". Not a diagnosis.";
  if (t0 === null) t0 = now;
  chart.add((now - t0) / 1000, values);
  record("prediction", { event: ev });
  const behind = msg.lag_s > 0.5 ? ` The server is ${msg.lag_s.toFixed(1)} s behind: it skips video to catch up.` : "";
  setStatus(`live: ${sf.events.length} predictions.${behind} ${ev.notice || "research tool, not a diagnosis"}`, "live");
}

function onMessage(e) {
  let msg;
  try { msg = JSON.parse(e.data); } catch (_) { return; }
  if (msg.type === "hello") { sf.session = msg.session; record("hello", { notice: msg.notice }); }
  else if (msg.type === "prediction") onPrediction(msg);
  else if (msg.type === "error") { sf.error = msg.message; setStatus(`error: ${msg.message}`, "error"); }
  else if (msg.type === "end") { record("end", { reason: msg.reason }); teardown(`ended: ${msg.reason}`); }
}

// Latency mode: see each encoded video frame as it leaves the encoder, keyed by its RTP timestamp.
function watchSender(sender) {
  if (!sender.createEncodedStreams) return;
  const { readable, writable } = sender.createEncodedStreams();
  const isVideo = sender.track && sender.track.kind === "video";
  readable.pipeThrough(new TransformStream({
    transform(frame, ctl) {
      if (isVideo) {
        const md = frame.getMetadata ? frame.getMetadata() : {};
        const ts = (md.rtpTimestamp !== undefined) ? md.rtpTimestamp : frame.timestamp;
        if (firstSent === null) firstSent = ts;
        sentAt.set(ts, performance.now());
        if (sentAt.size > 2000) sentAt.delete(sentAt.keys().next().value);
      }
      ctl.enqueue(frame);
    },
  })).pipeTo(writable);
}

// The models see small frames (e.g. 64x48 at 25 fps): send at most 4 times the model's frame height, at
// the model's frame rate, and when the CPU or the network is short, let the browser lower the resolution,
// never the frame rate (tremor and tapping live in the timing). The preview stays at full resolution.
async function tuneVideo(sender, answer) {
  const settings = sender.track.getSettings();
  const height = answer.frame_size ? answer.frame_size[1] : 48;
  const params = sender.getParameters();
  if (!params.encodings || !params.encodings.length) return;
  params.encodings[0].scaleResolutionDownBy = Math.max(1, (settings.height || 480) / (4 * height));
  if (answer.fps) params.encodings[0].maxFramerate = answer.fps;
  try {
    await sender.setParameters({ ...params, degradationPreference: "maintain-framerate" });
  } catch (_) {
    await sender.setParameters(params).catch(() => {});   // older browsers: no degradationPreference
  }
  sf.videoSend = { scale: params.encodings[0].scaleResolutionDownBy, fps: answer.fps || null,
                   camera: [settings.width, settings.height, settings.frameRate] };
}

function waitForIce(pc, ms) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise(resolve => {
    const done = () => { if (pc.iceGatheringState === "complete") { pc.removeEventListener("icegatheringstatechange", done); resolve(); } };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, ms);                 // send what was gathered so far
  });
}

async function start() {
  $("start").disabled = true;
  sf.events = []; sf.latencies = []; sf.error = null; t0 = null; firstSent = null; sentAt.clear();
  sf.log = []; sf.videoLate = 0; sf.unmatched = 0; sf.videoFps = []; chart.reset();
  try {
    if (!navigator.mediaDevices) throw new Error("the browser gives the camera only to https pages or to http://localhost");
    setStatus("asking for the camera and the microphone...", "media");
    // Voice measures need the raw signal: no echo cancellation, noise suppression or automatic gain.
    stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: 1 },
      video: true,
    });
    $("preview").srcObject = stream;
    const latency = params.get("latency") === "1" && "createEncodedStreams" in RTCRtpSender.prototype;
    sf.latencyMode = latency;
    pc = new RTCPeerConnection(latency ? { encodedInsertableStreams: true } : {});
    pc.addEventListener("connectionstatechange", () => {
      record("connection", { state: pc.connectionState });
      if (pc.connectionState === "failed") teardown("connection failed", "error");
    });
    const token = new URLSearchParams(location.search).get("token");   // a server bound beyond loopback has one
    channel = pc.createDataChannel("events");
    channel.onmessage = onMessage;
    // such a server checks the token on the data channel too, before it sends anything on it
    if (token) channel.onopen = () => channel.send(JSON.stringify({ type: "auth", token }));
    const senders = stream.getTracks().map(track => pc.addTrack(track, stream));
    if (latency) senders.forEach(watchSender);
    setStatus("connecting...", "connecting");
    await pc.setLocalDescription(await pc.createOffer());
    await waitForIce(pc, 3000);
    const offer = { sdp: pc.localDescription.sdp, type: pc.localDescription.type };
    if (token) offer.token = token;
    const res = await fetch("/offer", { method: "POST", headers: { "Content-Type": "application/json" },
                                         body: JSON.stringify(offer) });
    if (!res.ok) throw new Error(`server: ${res.status} ${await res.text()}`);
    const answer = await res.json();
    sf.session = answer.session;
    sf.modalities = answer.modalities || null;     // what the model uses; the others show "n/a"
    if (answer.modalities && answer.modalities.join() !== MODS.join()) setup(answer);
    if (answer.positive_class) $("positive").textContent = `"${answer.positive_class}"`;
    record("start", {});
    await pc.setRemoteDescription({ sdp: answer.sdp, type: answer.type });
    const video = senders.find(s => s.track && s.track.kind === "video");
    if (video) await tuneVideo(video, answer);
    setStatus("connected; the first prediction comes after about 3 seconds of sound and picture.", "waiting");
    $("stop").disabled = false; $("download").disabled = false;
  } catch (err) {
    sf.error = String(err);
    teardown(`could not start: ${err}`, "error");
  }
}

function stop() {
  $("stop").disabled = true;
  if (channel && channel.readyState === "open") {
    channel.send(JSON.stringify({ type: "stop" }));   // the server flushes, sends "end", then we close
    const mine = pc;
    setTimeout(() => { if (pc === mine) teardown("stopped"); }, 3000);   // no "end" came: close anyway
  } else teardown("stopped");
}

function teardown(text, state = "stopped") {
  if (stream) stream.getTracks().forEach(t => t.stop());
  if (pc) pc.close();
  pc = null; channel = null; stream = null;
  $("preview").srcObject = null;
  $("start").disabled = false; $("stop").disabled = true;
  setStatus(text, state);
}

function download() {
  const blob = new Blob([sf.log.map(e => JSON.stringify(e)).join("\n") + "\n"], { type: "application/x-ndjson" });
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = `symptomfuse-events-${sf.session || "session"}.jsonl`;
  a.click();
  URL.revokeObjectURL(a.href);
}

$("start").onclick = start;
$("stop").onclick = stop;
$("download").onclick = download;
window.addEventListener("pagehide", () => { if (pc) pc.close(); });
if (params.get("autostart") === "1") start();
