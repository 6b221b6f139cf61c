// Telling an officer that an alert has arrived while the alert page is open: two short tones,
// a vibration on phones, and a system notification when the page is not in view.
//
// Browsers let a page make sound and show notifications only after the user asks for it, so
// this starts off and the officer switches it on with the page's button (the choice is kept on
// this device). A notification says where an alert is, never whom it is about: it may show on
// a locked phone's screen or stay in the notification list. No service worker is used, so
// nothing is notified or cached once the page is closed.

const CHOICE = 'openfrt.alert-signals';
let audio = null;

/** Whether the officer switched signals on, on this device. */
export function signalsOn() {
  return window.localStorage.getItem(CHOICE) === 'on';
}

/** Sound may start only after the user has touched the page: (re)start it from a click or tap. */
async function wakeAudio() {
  if (!audio && window.AudioContext) audio = new AudioContext();
  if (audio && audio.state === 'suspended') await audio.resume();
}

/** Switch signals on (asking for notification permission, from the click) or off. */
export async function setSignals(on) {
  window.localStorage.setItem(CHOICE, on ? 'on' : 'off');
  if (!on) return 'off';
  await wakeAudio();
  if (!('Notification' in window)) return 'no-notifications';
  if (Notification.permission === 'default') await Notification.requestPermission();
  return Notification.permission;
}

function tones() {
  if (!audio) return;
  const start = audio.currentTime;
  [0, 0.25].forEach((offset) => {
    const tone = audio.createOscillator();
    const gain = audio.createGain();
    tone.frequency.value = 880;
    gain.gain.setValueAtTime(0.2, start + offset);
    gain.gain.exponentialRampToValueAtTime(0.001, start + offset + 0.18);
    tone.connect(gain).connect(audio.destination);
    tone.start(start + offset);
    tone.stop(start + offset + 0.2);
  });
}

/** Signal a newly raised alert, if the officer switched signals on. */
export function signal(alert) {
  if (!signalsOn()) return;
  tones();
  if (navigator.vibrate) navigator.vibrate([200, 100, 200]);
  if ('Notification' in window && Notification.permission === 'granted' && document.visibilityState !== 'visible') {
    const notice = new Notification('openfrt: new alert', {
      body: `Camera ${alert.camera}, deployment ${alert.deployment}. Open the alert queue to review it.`,
      tag: `openfrt-alert-${alert.id}`,
    });
    notice.addEventListener('click', () => { window.focus(); notice.close(); });
  }
}

// Switched on earlier on this device: sound is ready after the first touch of the page.
if (signalsOn()) document.addEventListener('pointerdown', () => { wakeAudio(); }, { once: true });
