// Queries from the microphone and the camera: a few seconds of sound (MediaRecorder) or one photo
// (getUserMedia), handed on as a File, as if it had been dropped. The browser asks the person only
// when a button is pressed, and gives these only to a secure origin (https, or this loopback
// server); where it refuses, the page says why instead of failing silently.

const RECORD_SECONDS = 4;
let recording = null;  // the MediaRecorder while one runs: pressing the button again stops it

function refusal(what, error) {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    return `This browser offers no ${what} to this page (it does only on https or on this computer's own address).`;
  }
  if (error && (error.name === "NotAllowedError" || error.name === "SecurityError")) {
    return `The browser was not allowed to use the ${what}: allow it in this site's settings, or search with a file.`;
  }
  if (error && error.name === "NotFoundError") return `No ${what} was found.`;
  return `The ${what} could not be used: ${error ? error.message || error.name : "unknown error"}`;
}

// The stream of a device, or null (and the reason said) where the browser refuses it.
async function device(what, constraints, say) {
  try {
    return await navigator.mediaDevices.getUserMedia(constraints);
  } catch (error) {
    say(refusal(what, error), true);
    return null;
  }
}

function stopAll(stream) {
  for (const track of stream.getTracks()) track.stop();
}

// Records from the microphone; `done(file)` gets the recording, `say(text, isError)` tells progress.
export async function record(button, { done, say }) {
  if (recording) { recording.stop(); return; }
  const stream = await device("microphone", { audio: true }, say);
  if (!stream) return;
  const recorder = recording = new MediaRecorder(stream);
  const chunks = [];
  const label = button.textContent;
  recorder.addEventListener("dataavailable", (event) => { if (event.data.size) chunks.push(event.data); });
  recorder.addEventListener("stop", () => {
    clearTimeout(timer);
    stopAll(stream);
    recording = null;
    button.textContent = label;
    button.setAttribute("aria-pressed", "false");
    const type = (recorder.mimeType || "audio/webm").split(";")[0];
    const ext = type.includes("ogg") ? "ogg" : type.includes("mp4") ? "m4a" : "webm";
    if (!chunks.length) { say("Nothing was recorded: try again.", true); return; }
    done(new File(chunks, `microphone.${ext}`, { type }));
  });
  const timer = setTimeout(() => recorder.state !== "inactive" && recorder.stop(), RECORD_SECONDS * 1000);
  recorder.start();
  button.textContent = "■ Stop";
  button.setAttribute("aria-pressed", "true");
  say(`Listening for ${RECORD_SECONDS} s… (press Stop to search sooner)`);
}

// Takes one photo with the camera; `done(file)` gets it as a JPEG.
export async function photograph({ done, say }) {
  const stream = await device("camera", { video: true }, say);
  if (!stream) return;
  say("Taking a photo…");
  try {
    const video = document.createElement("video");
    video.muted = true;
    video.srcObject = stream;
    await video.play();
    // A camera's first frames are often dark while its exposure settles.
    await new Promise((resolve) => setTimeout(resolve, 400));
    const canvas = document.createElement("canvas");
    canvas.width = video.videoWidth || 640;
    canvas.height = video.videoHeight || 480;
    canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.9));
    if (!blob) throw new Error("the photo could not be made into a picture");
    done(new File([blob], "camera.jpg", { type: "image/jpeg" }));
  } catch (error) {
    say(refusal("camera", error), true);
  } finally {
    stopAll(stream);
  }
}
