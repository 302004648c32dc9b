// Tell the portal the browser's time zone, so that times are shown in it.
(function () {
  var zone;
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  } catch (error) {
    return;
  }
  if (!zone) {
    return;
  }
  var current = document.cookie.split("; ").find(function (item) {
    return item.indexOf("tz=") === 0;
  });
  if (current !== "tz=" + encodeURIComponent(zone)) {
    document.cookie = "tz=" + encodeURIComponent(zone) + "; path=/; max-age=31536000; SameSite=Lax";
  }
})();
