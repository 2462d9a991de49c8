// The onload.js customisation Microsoft documents for AD FS with the Azure MFA adapter: users without a
// verification method are told, then sent to MFA registration (aka.ms/mfasetup) after a short countdown.
// With the ProofUp change of docs/deploy-ad.md the notice also links to the portal, for students who loop.
(function () {
  var script = document.currentScript;
  var url = script.getAttribute("data-setup-url");
  var seconds = parseInt(script.getAttribute("data-seconds"), 10);
  var proofupPortalUrl = {{ portal_url | tojson }};
  var mfaSecondFactorErr = "The selected authentication method is not available for";
  var errorMessage = document.getElementById("errorMessage");
  if (!errorMessage || errorMessage.innerHTML.indexOf(mfaSecondFactorErr) < 0) { return; }
  errorMessage.innerHTML = "You will be automatically redirected in " + seconds + " seconds to set up your " +
    "account for additional security verification. Once you have completed the setup, please return to the " +
    "application you are attempting to access.<br><br>If you are not redirected automatically, please click " +
    "<a id=\"mfaSetupLink\" href=\"" + url + "\">here</a>." +
    (proofupPortalUrl ? "<br><br>Sent back to this page again and again? <a id=\"proofupLink\" href=\"" +
      proofupPortalUrl + "\">Get out of the loop with ProofUp</a>." : "");
  window.setTimeout(function () { window.location.href = url; }, seconds * 1000);
})();
