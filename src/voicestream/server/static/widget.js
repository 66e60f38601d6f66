/* voicestream voice widget. Embed: <script src="https://HOST/widget.js" data-agent-id="…"
   data-ticket="…" data-transport="auto|webrtc|websocket"></script>. Plain JS, no build step,
   no request but to HOST. WebRTC first (Opus, the browser's echo cancellation, data channel
   "events"); a WebSocket with 16 kHz PCM as the fallback. State: window.voicestreamWidget. */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || window.voicestreamWidget) return;
  var ds = script.dataset, RATE = 16000, RTC_TIMEOUT_MS = 10000;
  var origin = new URL(script.src, location.href).origin;
  // data-query-params (the demo page): settings may come from the page's own address.
  var qp = new URLSearchParams("queryParams" in ds ? location.search : "");
  var cfg = {
    agentId: ds.agentId || qp.get("agent_id") || "",
    ticket: ds.ticket || qp.get("ticket") || "",
    transport: ds.transport || qp.get("transport") || "auto",
    endUserId: ds.endUserId || qp.get("end_user_id") || ""
  };
  var W = (window.voicestreamWidget = {
    state: "idle", transport: null, capture: null, sessionId: null, captions: [], events: [],
    errors: [], agentAudioFrames: 0, agentAudioBytes: 0, agentAudioMs: 0, agentAudioAfterUserMs: 0,
    timings: {}, config: cfg, start: start, stop: stop, sendText: sendText
  });
  var conn = null, mic = null, ctx = null, userFinal = false, live = null;

  // ---- UI, in a shadow root so the host page's CSS and ours never meet ----
  var host = document.createElement("div");
  host.id = "voicestream-widget";
  var root = host.attachShadow({ mode: "open" });
  root.innerHTML =
    "<style>:host{all:initial}.w{position:fixed;right:20px;bottom:20px;z-index:2147483000;" +
    "font:14px/1.4 system-ui,sans-serif;color:#111;display:flex;flex-direction:column;" +
    "align-items:flex-end;gap:8px}.p[hidden]{display:none}.p{width:300px;max-height:320px;" +
    "background:#fff;border:1px solid #ccd;border-radius:12px;box-shadow:0 4px 16px #0002;" +
    "display:flex;flex-direction:column}.log{overflow-y:auto;padding:6px 10px;flex:1}" +
    ".log p{margin:4px 0}.user{text-align:right;color:#0b4a8b}.partial{opacity:.6}" +
    ".sys{color:#a00;font-size:12px}.st{font-size:12px;color:#555;padding:4px 10px 0}" +
    "form{display:flex;border-top:1px solid #eee}input{flex:1;border:0;padding:8px 10px;" +
    "font:inherit;background:none}form button{border:0;background:none;padding:0 12px;" +
    "cursor:pointer;font:inherit;color:#0b4a8b}.mic{width:56px;height:56px;border-radius:50%;" +
    "border:0;background:#0b4a8b;color:#fff;cursor:pointer;box-shadow:0 2px 8px #0004}" +
    ".mic[aria-pressed=true]{background:#c0392b}:focus-visible{outline:3px solid #f5a623;" +
    "outline-offset:2px}</style><div class=w><div class=p role=region " +
    "aria-label='Voice assistant' hidden><div class=st aria-live=polite></div><div class=log " +
    "role=log aria-live=polite aria-label='Conversation captions'></div><form><input " +
    "maxlength=2000 aria-label='Type a message' placeholder='Type a message'><button " +
    "aria-label='Send message'>Send</button></form></div><button class=mic type=button " +
    "aria-pressed=false aria-label='Start voice conversation'><svg aria-hidden=true " +
    "viewBox='0 0 24 24' width=26 height=26><path fill=currentColor d='M12 14a3 3 0 0 0 3-3V5a3" +
    " 3 0 0 0-6 0v6a3 3 0 0 0 3 3zm5-3a5 5 0 0 1-10 0H5a7 7 0 0 0 6 6.9V21h2v-3.1a7 7 0 0 0 " +
    "6-6.9z'/></svg></button></div>";
  var $ = function (s) { return root.querySelector(s); };
  var micBtn = $(".mic"), panel = $(".p"), log = $(".log"), status = $(".st"), input = $("input");
  micBtn.onclick = function () { conn || W.state === "connecting" ? stop() : start(); };
  $("form").onsubmit = function (e) {
    e.preventDefault();
    var t = input.value.trim();
    if (t) { input.value = ""; sendText(t); }
  };
  if (document.body) document.body.appendChild(host);
  else document.addEventListener("DOMContentLoaded", function () { document.body.appendChild(host); });

  var LABELS = { connecting: "Connecting…", connected: "Listening", ended: "Conversation ended", error: "Connection failed" };
  function setState(s) {
    W.state = s; panel.hidden = false; status.textContent = LABELS[s] || "";
    var on = s === "connecting" || s === "connected";
    micBtn.setAttribute("aria-pressed", String(on));
    micBtn.setAttribute("aria-label", (on ? "End" : "Start") + " voice conversation");
  }
  function line(cls, text) {
    var p = document.createElement("p");
    p.className = cls; p.textContent = text;
    log.appendChild(p); log.scrollTop = log.scrollHeight;
    return p;
  }
  function fail(msg) { W.errors.push(msg); line("sys", msg); }
  function caption(speaker, text, final) {
    var last = W.captions[W.captions.length - 1];
    if (last && last.speaker === "user" && !last.final) W.captions.pop(); // a partial is replaced
    W.captions.push({ speaker: speaker, text: text, final: final });
  }

  // ---- protocol events: the same JSON on the data channel and on the WebSocket ----
  function onEvent(ev) {
    W.events.push(ev.type);
    if (W.events.length > 200) W.events.shift();
    switch (ev.type) {
      case "session": W.sessionId = ev.session_id; break;
      case "user_transcript":
        caption("user", ev.text, !!ev.final);
        if (!live) live = line("user partial", "");
        live.textContent = ev.text;
        if (ev.final) {
          live.className = "user"; live = null; userFinal = true;
          W.timings.userFinal = performance.now(); W.timings.agentAudio = null;
        }
        break;
      case "agent_response": caption("agent", ev.text, true); line("agent", ev.text); break;
      case "interruption": flushPlayback(); break;
      case "ping": conn && conn.send({ type: "pong", event_id: ev.event_id }); break;
      case "error": fail(ev.message || ev.code); break;
    }
  }
  function onText(data) {
    try { onEvent(JSON.parse(data)); } catch (e) { W.errors.push(String(e)); }
  }
  function heardAgent(ms, bytes) {
    W.agentAudioFrames++; W.agentAudioMs += ms; W.agentAudioBytes += bytes;
    if (!userFinal) return;
    W.agentAudioAfterUserMs += ms;
    if (W.timings.agentAudio == null) W.timings.agentAudio = performance.now();
  }
  function audioCtx() {
    if (!ctx) ctx = new AudioContext();
    if (ctx.state === "suspended") ctx.resume();
    return ctx;
  }

  async function start() {
    if (!cfg.agentId) { fail("data-agent-id is missing"); setState("error"); return; }
    setState("connecting");
    audioCtx(); // within the click: a user gesture is what lets audio start
    try {
      mic = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true } });
    } catch (e) { mic = null; fail("Microphone unavailable: type your message instead."); }
    if (cfg.transport !== "websocket" && window.RTCPeerConnection) {
      try { conn = await startWebRTC(); W.transport = "webrtc"; setState("connected"); return; }
      catch (e) { W.errors.push("webrtc: " + e.message); if (cfg.transport === "webrtc") return lost("error"); }
    }
    try { conn = await startWebSocket(); W.transport = "websocket"; setState("connected"); }
    catch (e) { fail("Could not connect: " + e.message); lost("error"); }
  }
  function stop() {
    var c = conn;
    conn = null;
    if (c) { c.send({ type: "end" }); c.close(); }
    flushPlayback();
    lost("ended");
  }
  function lost(state) {
    conn = null;
    if (mic) mic.getTracks().forEach(function (t) { t.stop(); });
    mic = null;
    setState(state);
  }
  function sendText(text) {
    if (!conn) { start().then(function () { if (conn) sendText(text); }); return; }
    caption("user", text, true); line("user", text);
    conn.send({ type: "text", text: text });
  }
  function post(method, body) {
    return fetch(origin + "/v1/convai/webrtc/offer", { method: method, headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  }

  // ---- WebRTC: the browser captures, encodes, cancels echo and plays ----
  async function startWebRTC() {
    var pc = new RTCPeerConnection({ iceServers: [] }), dc = pc.createDataChannel("events");
    var pcId = null, pcSecret = null, pending = [], timer = null, meter = null, audio = new Audio(), c;
    if (mic) mic.getAudioTracks().forEach(function (t) { pc.addTrack(t, mic); });
    else pc.addTransceiver("audio", { direction: "recvonly" });
    var close = function () { clearInterval(meter); pc.close(); audio.srcObject = null; };
    pc.ontrack = function (e) {
      var stream = e.streams[0] || new MediaStream([e.track]);
      audio.srcObject = stream;
      audio.play().catch(function () { /* autoplay refused; the stream still flows */ });
      // Chrome feeds a remote stream to Web Audio only while a media element plays it too.
      var an = audioCtx().createAnalyser(), buf = new Float32Array(1024);
      an.fftSize = 1024;
      audioCtx().createMediaStreamSource(stream).connect(an);
      meter = setInterval(function () {
        an.getFloatTimeDomainData(buf);
        var sum = 0;
        for (var i = 0; i < buf.length; i++) sum += buf[i] * buf[i];
        if (Math.sqrt(sum / buf.length) > 0.005) heardAgent(50, 0);
      }, 50);
    };
    function flush() { // trickle: one PATCH per burst of candidates, once the pc_id is known
      timer = null;
      if (!pcId || !pending.length) return;
      var patch = { pc_id: pcId, candidates: pending.splice(0) };
      // A peer answers to its creator only: the ticket's holder, or whoever got its pc_secret.
      if (cfg.ticket) patch.ticket = cfg.ticket;
      if (pcSecret) patch.pc_secret = pcSecret;
      post("PATCH", patch).catch(function (e) { W.errors.push("trickle: " + e.message); });
    }
    pc.onicecandidate = function (e) {
      var k = e.candidate;
      pending.push(k && k.candidate ? { candidate: k.candidate, sdp_mid: k.sdpMid, sdp_mline_index: k.sdpMLineIndex } : { candidate: "" });
      if (!timer) timer = setTimeout(flush, 30);
    };
    var failed = new Promise(function (_, rej) {
      setTimeout(function () { rej(new Error("timed out")); }, RTC_TIMEOUT_MS);
      pc.onconnectionstatechange = function () {
        if (pc.connectionState !== "failed") return;
        rej(new Error("ICE failed"));
        if (conn === c) lost("ended");
      };
    });
    var opened = new Promise(function (res) { dc.onopen = res; });
    dc.onmessage = function (e) { onText(e.data); };
    dc.onclose = function () { if (conn === c) lost("ended"); };
    var negotiate = async function () {
      await pc.setLocalDescription(await pc.createOffer());
      var body = { sdp: pc.localDescription.sdp, type: "offer", agent_id: cfg.agentId };
      if (cfg.ticket) body.ticket = cfg.ticket;
      if (cfg.endUserId) body.end_user_id = cfg.endUserId;
      if (W.sessionId) body.session_id = W.sessionId;
      var r = await post("POST", body), ans = await r.json();
      if (!r.ok) throw new Error((ans.error && ans.error.message) || "HTTP " + r.status);
      await pc.setRemoteDescription({ type: "answer", sdp: ans.sdp });
      pcId = ans.pc_id; pcSecret = ans.pc_secret || null;
      // A ticket opens one conversation: the WebSocket fallback resumes this one with it.
      W.sessionId = ans.session_id || W.sessionId;
      flush();
      await opened;
    };
    try { await Promise.race([negotiate(), failed]); } catch (e) { close(); throw e; }
    return (c = { send: function (o) { if (dc.readyState === "open") dc.send(JSON.stringify(o)); }, close: close });
  }

  // ---- WebSocket: 16 kHz s16le PCM both ways, through Web Audio ----
  var playhead = 0, sources = [];
  function flushPlayback() { // barge-in: what is queued must not be heard
    sources.forEach(function (s) { try { s.stop(); } catch (e) { /* not started */ } });
    sources = []; playhead = 0;
  }
  function play(buf) {
    var pcm = new Int16Array(buf), n = pcm.length;
    if (!n) return;
    var c = audioCtx(), ab = c.createBuffer(1, n, RATE), ch = ab.getChannelData(0), src = c.createBufferSource();
    for (var i = 0; i < n; i++) ch[i] = pcm[i] / 32768;
    src.buffer = ab; src.connect(c.destination);
    var at = Math.max(c.currentTime + 0.03, playhead);
    src.start(at); playhead = at + ab.duration;
    sources.push(src);
    src.onended = function () { sources.splice(sources.indexOf(src) >>> 0, 1); };
    heardAgent(n * 1000 / RATE, buf.byteLength);
  }
  function downsampler(from) { // linear interpolation: speech has little above 8 kHz to alias
    var step = from / RATE, t = 0, prev = 0;
    return function (x) {
      var out = [];
      for (; t < x.length - 1; t += step) {
        var i = Math.floor(t), a = i < 0 ? prev : x[i];
        out.push(a + (x[i + 1] - a) * (t - i));
      }
      t -= x.length; prev = x[x.length - 1];
      return out;
    };
  }
  var WORKLET = "registerProcessor('vs-capture',class extends AudioWorkletProcessor{process(i){" +
    "if(i[0]&&i[0][0])this.port.postMessage(i[0][0].slice(0));return true}})";
  async function capture(ws) {
    if (!mic) return function () {};
    var c = audioCtx(), src = c.createMediaStreamSource(mic), down = downsampler(c.sampleRate);
    var frame = new Int16Array(320), fill = 0, node, sink = c.createGain(); // 20 ms per message
    var onChunk = function (x) {
      var y = down(x);
      for (var i = 0; i < y.length; i++) {
        frame[fill++] = Math.max(-1, Math.min(1, y[i])) * 32767;
        if (fill === 320) { fill = 0; if (ws.readyState === 1) ws.send(frame.slice(0).buffer); }
      }
    };
    try {
      await c.audioWorklet.addModule(URL.createObjectURL(new Blob([WORKLET], { type: "text/javascript" })));
      node = new AudioWorkletNode(c, "vs-capture");
      node.port.onmessage = function (e) { onChunk(e.data); };
      W.capture = "worklet";
    } catch (e) { // no AudioWorklet, or a page CSP that refuses blob: modules
      node = c.createScriptProcessor(2048, 1, 1);
      node.onaudioprocess = function (e) { onChunk(e.inputBuffer.getChannelData(0)); };
      W.capture = "scriptprocessor";
    }
    sink.gain.value = 0; // pulls the graph without playing the microphone back
    src.connect(node); node.connect(sink); sink.connect(c.destination);
    return function () { src.disconnect(); node.disconnect(); };
  }
  function startWebSocket() {
    return new Promise(function (res, rej) {
      var q = new URLSearchParams({ agent_id: cfg.agentId, input_format: "pcm_16000", output_format: "pcm_16000" });
      if (cfg.ticket) q.set("ticket", cfg.ticket);
      if (cfg.endUserId) q.set("end_user_id", cfg.endUserId);
      if (W.sessionId) q.set("session_id", W.sessionId);
      var ws = new WebSocket(origin.replace(/^http/, "ws") + "/v1/convai/stream?" + q);
      var unhook = function () {}, up = false, c = {
        send: function (o) { if (ws.readyState === 1) ws.send(JSON.stringify(o)); },
        close: function () { unhook(); ws.close(1000); }
      };
      ws.binaryType = "arraybuffer";
      ws.onopen = function () {
        up = true;
        capture(ws).then(function (u) { unhook = u; res(c); }, function (e) { ws.close(); rej(e); });
      };
      ws.onmessage = function (e) { typeof e.data === "string" ? onText(e.data) : play(e.data); };
      ws.onclose = function (e) {
        unhook();
        if (!up) return rej(new Error("WebSocket closed (" + e.code + ")"));
        if (conn !== c) return;
        if (e.code !== 1000) fail("Disconnected (" + e.code + ")");
        lost("ended");
      };
    });
  }
})();
