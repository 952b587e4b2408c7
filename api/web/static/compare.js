"use strict";
// The compare page: flicker picture A and picture B in the same place, which shows small differences best.
(() => {
  const button = document.getElementById("flicker");
  const first = document.querySelector(".compare-a img");
  const second = document.querySelector(".compare-b img");
  const sources = [first.src, second.src];
  const alts = [first.alt, second.alt];
  let timer = null;
  let showing = 0;
  button.addEventListener("click", () => {
    if (timer) {
      clearInterval(timer);
      timer = null;
      showing = 0;
    } else {
      timer = setInterval(() => {
        showing = 1 - showing;
        first.src = sources[showing];
        first.alt = alts[showing];
      }, 600);
    }
    first.src = sources[showing];
    first.alt = alts[showing];
    button.setAttribute("aria-pressed", String(Boolean(timer)));
  });
})();
