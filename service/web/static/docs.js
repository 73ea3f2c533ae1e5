"use strict";
function el(tag, text, cls){const e=document.createElement(tag);if(text!==undefined)e.textContent=text;if(cls)e.className=cls;return e;}
fetch("openapi.json").then(r=>r.json()).then(doc=>{
  const root=document.getElementById("doc");root.textContent="";
  root.appendChild(el("p",doc.info.description));
  root.appendChild(el("h2","Routes"));
  for(const [path,ops] of Object.entries(doc.paths)){
    for(const [method,op] of Object.entries(ops)){
      const box=el("div",undefined,"op "+method);
      const h=el("h3");h.appendChild(el("span",method,"m"));h.appendChild(el("code",path));box.appendChild(h);
      box.appendChild(el("p",op.summary+(op.description?" "+op.description:"")));
      if(op.parameters&&op.parameters.length){
        const ul=el("ul");
        for(const p of op.parameters){const li=el("li");li.appendChild(el("code",p.name));
          li.appendChild(document.createTextNode(" ("+p.in+") "+(p.description||"")+" "+JSON.stringify(p.schema)));ul.appendChild(li);}
        box.appendChild(el("h4","Parameters"));box.appendChild(ul);
      }
      if(op.requestBody){box.appendChild(el("h4","Body"));
        box.appendChild(el("pre",JSON.stringify(op.requestBody.content["application/json"].schema)));}
      const ul=el("ul");
      for(const [code,r] of Object.entries(op.responses)){ul.appendChild(el("li",code+": "+r.description));}
      box.appendChild(el("h4","Responses"));box.appendChild(ul);
      root.appendChild(box);
    }
  }
  root.appendChild(el("h2","Schemas"));
  for(const [name,schema] of Object.entries(doc.components.schemas)){
    root.appendChild(el("h3",name));root.appendChild(el("pre",JSON.stringify(schema,null,2)));
  }
}).catch(e=>{document.getElementById("doc").textContent="cannot load openapi.json: "+e;});
