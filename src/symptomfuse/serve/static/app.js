// symptomfuse live: camera + microphone to the server over WebRTC, predictions back over a data channel.
// Research tool, not a diagnosis. URL options: ?autostart=1 starts at once (tests); ?guided=1 then
// starts the guided session as soon as the server is connected; ?latency=1 records when each encoded
// video frame leaves this page, to time capture -> prediction.
"use strict";
const params = new URLSearchParams(location.search);
const $ = id => document.getElementById(id);
// The modalities, their indicator names and what their gates can say come from the server (the model's
// export: /health and the offer's answer), so that a new modality needs no change here.
let MODS = [], QUALITY_NAME = {};
const COLORS = ["#2271b1", "#8c8f94", "#00a32a", "#dba617", "#9b51e0", "#135e96"];
const QUALITY_TEXT = {                         // the engine's quality gates (symptomfuse.stream.quality)
  ok: "ok", silence: "silence", no_voice: "no voice", no_data: "no data", black: "dark picture",
  frozen: "frozen picture", no_hand: "no hand in view", no_face: "no face in view",
  no_landmarks: "no landmark detector", landmarks_behind: "landmark detector behind" };

// State the tests and the benchmark read (window.sf); nothing here leaves the page except the offer.
const sf = window.sf = { state: "idle", session: null, events: [], latencies: [], error: null, log: [], videoFps: [],
                         guide: null };
let TASKS = [];                                // the model's guided-session tasks (from the server)
let chart = new ProbChart($("chart"), [{ key: "fused", label: "fused", color: "#d63638", width: 3 }]);

// Build the quality chips, the table of current values and the chart's series for the model's modalities.
function setup(info) {
  if (!info || !info.modalities) return;
  MODS = info.modalities;
  TASKS = info.tasks || [];
  showTasks(-1);
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
// What a fused result says: a ratings model's predicted rating (what its evaluation scored), else the top class.
function said(f) {
  return f.rating ? `the predicted rating is ${f.rating.predicted} (expected ${f.rating.expected.toFixed(2)})`
    : `the model's top class is "${f.label ?? "-"}"`;
}

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
    : `fused: ${said(fused)}` +
      (fused.uncertainty != null ? ` (uncertainty ${fused.uncertainty.toFixed(2)})` : "") + ". Not a diagnosis.";
  if (t0 === null) t0 = now;
  chart.add((now - t0) / 1000, values);
  showFeedback(ev);
  record("prediction", { event: ev });
  const behind = msg.lag_s > 0.5 ? ` The server is ${msg.lag_s.toFixed(1)} s behind: it skips video to catch up.` : "";
  setStatus(`live: ${sf.events.length} predictions.${behind} ${ev.notice || "research tool, not a diagnosis"}`, "live");
}

// ---- the guided session: the server keeps its timeline on the media clock and sends each phase ----------
function showTasks(current) {
  const list = $("tasks");
  if (!TASKS.length) { list.replaceChildren(Object.assign(document.createElement("li"), { textContent: "this model has no guided tasks" })); return; }
  list.replaceChildren(...TASKS.map((t, i) => {
    const li = document.createElement("li");
    li.innerHTML = `<strong></strong> <span></span>`;
    li.firstChild.textContent = `${t.title} (${t.seconds} s):`;
    li.lastChild.textContent = t.instruction;
    li.className = i === current ? "current" : i < current ? "done" : "";
    return li;
  }));
}
let countdown = null;
function onGuide(msg) {
  const g = sf.guide;
  g.phases.push({ step: msg.step, phase: msg.phase, task: msg.task ? msg.task.name : null });
  record("guide", { step: msg.step, phase: msg.phase });
  showTasks(msg.step);
  const box = $("task-now");
  box.hidden = false;
  box.className = "task-now " + msg.phase;
  if (msg.task) {
    $("task-title").textContent = `${msg.step + 1}/${msg.steps} ${msg.task.title}: ` +
      (msg.phase === "prepare" ? "get ready" : "now");
    $("task-instruction").textContent = msg.task.instruction;
  } else {
    $("task-title").textContent = msg.phase === "done" ? "Done" : "Finishing...";
    $("task-instruction").textContent = "Thank you. The result is below.";
    $("task-feedback").replaceChildren();
  }
  const deadline = performance.now() + 1000 * msg.remaining_s;
  clearInterval(countdown);
  const tick = () => { $("task-count").textContent = msg.task ? `${Math.max(0, Math.ceil((deadline - performance.now()) / 1000))} s` : ""; };
  tick();
  countdown = setInterval(tick, 100);
}
// What the current task needs, as the last update saw it: its modalities' gates, and the landmarks.
function showFeedback(ev) {
  const g = sf.guide;
  if (!g || !g.phases.length) return;
  const now = g.phases[g.phases.length - 1], step = g.plan && g.plan[now.step];
  if (!step) return;
  const chips = step.modalities.map(m => {
    const q = ev.modalities[m] ? ev.modalities[m].quality : null;
    const chip = document.createElement("span");
    chip.className = "chip " + (q === "ok" ? "ok" : "bad");
    chip.textContent = `${QUALITY_NAME[m] || m}: ${q ? (QUALITY_TEXT[q] || q) : "-"}`;
    return chip;
  });
  $("task-feedback").replaceChildren(...chips);
}
function pct(p) { return p == null ? "-" : p.toFixed(2); }
function onResult(result) {
  sf.guide.result = result;
  record("guided_result", { result });
  clearInterval(countdown);
  $("task-count").textContent = "";
  const f = result.fused, pos = sf.positive || "the condition";
  $("result").hidden = false;
  $("result-line").textContent = f.abstain
    ? `The model abstains: ${f.why}.` + (f.p != null ? ` (p(${pos}) = ${pct(f.p)}, 90% interval ${pct(f.interval[0])}-${pct(f.interval[1])})` : "")
    : `p(${pos}) = ${pct(f.p)} (90% interval ${pct(f.interval[0])}-${pct(f.interval[1])}; uncertainty ` +
      `${f.uncertainty.toFixed(2)}): ${said(f)}. Not a diagnosis.`;
  $("result-rows").replaceChildren(...result.steps.map(s => {
    const tr = document.createElement("tr");
    const usable = Object.entries(s.usable).map(([m, n]) => `${m} ${n}/${s.windows}`).join(", ");
    const own = Object.entries(s.p).map(([m, p]) => `${m} ${pct(p)}` +
      (s.unlike_training.includes(m) ? " (unlike the training data)" : "")).join(", ") || "-";
    const why = !s.windows ? " (no window: the session ended first)" : Object.values(s.usable).every(n => n === 0)
      ? " (" + [...new Set(Object.values(s.quality).flatMap(q => Object.keys(q)).map(q => QUALITY_TEXT[q] || q))].join(", ") + ")" : "";
    const contrib = s.contribution == null ? (Object.values(s.usable).some(n => n > 0) ? "all of it" : "left out")
      : (s.contribution >= 0 ? "+" : "") + s.contribution.toFixed(2);
    for (const text of [s.title, usable + why, own, contrib]) tr.appendChild(Object.assign(document.createElement("td"), { textContent: text }));
    return tr;
  }));
  setStatus(`guided session done. ${result.notice}`, "done");
}
// Landmarks the server found, over the preview (the picture's own coordinates, letterboxed like the video).
function drawOverlay(msg) {
  const video = $("preview"), canvas = $("overlay"), ctx = canvas.getContext("2d");
  canvas.width = video.clientWidth; canvas.height = video.clientHeight;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const vw = video.videoWidth || 4, vh = video.videoHeight || 3;
  const scale = Math.min(canvas.width / vw, canvas.height / vh);
  const w = vw * scale, h = vh * scale, x0 = (canvas.width - w) / 2, y0 = (canvas.height - h) / 2;
  const o = sf.guide ? sf.guide.overlay : (sf.overlay = sf.overlay || { hands: 0, face: 0 });
  for (const [kind, color, r] of [["face", "#00a32a", 1.5], ["hands", "#d63638", 3]]) {
    const pts = msg[kind];
    if (!pts) continue;
    o[kind] = (o[kind] || 0) + 1;
    ctx.fillStyle = color;
    for (const [x, y] of pts) { ctx.beginPath(); ctx.arc(x0 + x * w, y0 + y * h, r, 0, 2 * Math.PI); ctx.fill(); }
  }
}
function startGuided() {
  if (!channel || channel.readyState !== "open") return;
  $("guided-start").disabled = true;
  $("result").hidden = true;
  sf.guide = { plan: null, phases: [], result: null, overlay: { hands: 0, face: 0 }, error: null };
  channel.send(JSON.stringify({ type: "guided", action: "start" }));
}

function onMessage(e) {
  let msg;
  try { msg = JSON.parse(e.data); } catch (_) { return; }
  if (msg.type === "hello") {
    sf.session = msg.session; record("hello", { notice: msg.notice });
    if (TASKS.length) $("guided-start").disabled = false;
    if (params.get("guided") === "1") startGuided();
  }
  else if (msg.type === "prediction") onPrediction(msg);
  else if (msg.type === "guide_plan") { sf.guide.plan = msg.steps; record("guide_plan", { steps: msg.steps.map(s => s.name) }); }
  else if (msg.type === "guide") onGuide(msg);
  else if (msg.type === "guided_result") onResult(msg.result);
  else if (msg.type === "guide_error") { if (sf.guide) sf.guide.error = msg.message; setStatus(`guided session: ${msg.message}`); }
  else if (msg.type === "landmarks") drawOverlay(msg);
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

// The models see small frames (e.g. 64x48 at 25 fps): send at most 4 times the model's frame height (at
// most 480 px when the server finds hand or face landmarks, which need detail), at the model's frame rate,
// and when the CPU or the network is short, let the browser lower the resolution, never the frame rate
// (tremor and tapping live in the timing). The preview stays at full resolution.
async function tuneVideo(sender, answer) {
  const settings = sender.track.getSettings();
  const height = answer.frame_size ? answer.frame_size[1] : 48;
  const target = answer.landmarks && answer.landmarks.length ? 480 : 4 * height;
  const params = sender.getParameters();
  if (!params.encodings || !params.encodings.length) return;
  params.encodings[0].scaleResolutionDownBy = Math.max(1, (settings.height || 480) / target);
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
    if (answer.positive_class) { $("positive").textContent = `"${answer.positive_class}"`; sf.positive = answer.positive_class; }
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
  clearInterval(countdown);
  $("guided-start").disabled = true;
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
$("guided-start").onclick = startGuided;
$("stop").onclick = stop;
$("download").onclick = download;
window.addEventListener("pagehide", () => { if (pc) pc.close(); });
if (params.get("autostart") === "1") start();
