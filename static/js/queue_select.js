// The pending queue's header checkbox ticks (or clears) every request shown; ticking
// "select all N matching" ticks the shown ones too. Loaded with defer: the page is parsed.
(function () {
  const all = document.getElementById("select-all-shown");
  if (!all) {
    return;
  }
  const boxes = Array.from(document.querySelectorAll('input[type="checkbox"][name="requests"]'));
  const matching = document.getElementById("select-all-matching");

  function sync() {
    const ticked = boxes.filter((box) => box.checked).length;
    all.checked = ticked > 0 && ticked === boxes.length;
    all.indeterminate = ticked > 0 && ticked < boxes.length;
    if (matching && !all.checked) {
      matching.checked = false;
    }
  }

  all.addEventListener("change", () => {
    boxes.forEach((box) => {
      box.checked = all.checked;
    });
    sync();
  });
  boxes.forEach((box) => box.addEventListener("change", sync));
  if (matching) {
    matching.addEventListener("change", () => {
      if (matching.checked) {
        boxes.forEach((box) => {
          box.checked = true;
        });
        all.checked = true;
        all.indeterminate = false;
      }
    });
  }
  sync();
})();
